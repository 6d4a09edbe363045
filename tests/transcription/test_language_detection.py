"""Language detection on short chat messages, and the customer's known language as prior."""

# ruff: noqa: RUF001

from __future__ import annotations

import pytest

from transcription.language import DEFAULT_CANDIDATES, confidences, detect

pytest.importorskip("lingua")

# Five short support messages in each of ten languages (written for this test).
MESSAGES = {
    "en": ["Where is my order?", "Thanks a lot!", "My payment failed again",
           "Can I change the delivery address?", "The app keeps crashing"],
    "pt": ["Onde está meu pedido?", "Muito obrigado!", "Meu pagamento falhou de novo",
           "Posso mudar o endereço de entrega?", "O aplicativo fecha sozinho"],
    "es": ["¿Dónde está mi pedido?", "¡Muchas gracias!", "Mi pago falló otra vez",
           "¿Puedo cambiar la dirección de entrega?", "La aplicación se cierra sola"],
    "fr": ["Où est ma commande ?", "Merci beaucoup !", "Mon paiement a encore échoué",
           "Puis-je changer l'adresse de livraison ?", "L'application plante tout le temps"],
    "de": ["Wo ist meine Bestellung?", "Vielen Dank!", "Meine Zahlung ist wieder fehlgeschlagen",
           "Kann ich die Lieferadresse ändern?", "Die App stürzt ständig ab"],
    "it": ["Dov'è il mio ordine?", "Grazie mille!", "Il mio pagamento è fallito di nuovo",
           "Posso cambiare l'indirizzo di consegna?", "L'app continua a bloccarsi"],
    "ru": ["Где мой заказ?", "Большое спасибо!", "Мой платёж снова не прошёл",
           "Можно изменить адрес доставки?", "Приложение постоянно вылетает"],
    "ms": ["Di mana pesanan saya?", "Terima kasih banyak!", "Pembayaran saya gagal lagi",
           "Boleh saya tukar alamat penghantaran?", "Aplikasi ini asyik tertutup sendiri"],
    "tr": ["Siparişim nerede?", "Çok teşekkürler!", "Ödemem yine başarısız oldu",
           "Teslimat adresini değiştirebilir miyim?", "Uygulama sürekli çöküyor"],
    "ja": ["注文はどこですか？", "ありがとうございます！", "また支払いに失敗しました",
           "配送先を変更できますか？", "アプリが何度も落ちます"],
}  # fmt: skip


def test_short_messages_in_ten_languages_without_a_prior() -> None:
    """lingua's best guess is right on nearly all; where it is unsure (Malay or
    Indonesian?) the language is left unknown rather than guessed wrong."""
    results = [
        (lang, text, confidences(text, DEFAULT_CANDIDATES)[0][0], detect(text).language)
        for lang, texts in MESSAGES.items()
        for text in texts
    ]
    n = len(results)
    top1 = sum(best == lang for lang, _, best, _ in results) / n
    right = sum(got == lang for lang, _, _, got in results) / n
    unknown = [(lang, text) for lang, text, _, got in results if got is None]
    wrong = [(lang, text, got) for lang, text, _, got in results if got not in (lang, None)]
    print(
        f"\nlanguage detection on {n} short messages, 10 languages, no prior: lingua's best "
        f"guess {top1:.0%}; decided right {right:.0%}, left unknown {len(unknown)} "
        f"{unknown}, wrong {len(wrong)} {wrong}"
    )
    assert top1 >= 0.95
    assert right >= 0.9
    assert len(wrong) <= 1


def test_with_the_known_language_as_prior_every_message_is_right() -> None:
    for lang, texts in MESSAGES.items():
        for text in texts:
            assert detect(text, known=lang, candidates=DEFAULT_CANDIDATES).language == lang


def test_a_short_ambiguous_message_keeps_the_known_language() -> None:
    # "ok" or a product name says nothing about the language: the prior stands.
    for text in ("ok", "OK!!", "Netflix", "iPhone 15 Pro"):
        assert detect(text, known="pt").language == "pt"
    unsure = detect("ok", known=None)
    assert unsure.language is None or unsure.confidence < 0.9


def test_a_clear_message_in_another_language_overrides_the_prior() -> None:
    found = detect("Bonjour, je voudrais annuler ma commande s'il vous plaît", known="en")
    assert found.language == "fr" and found.confidence >= 0.9
    assert "over the known en" in found.reason


def test_no_letters_no_guess() -> None:
    assert detect("12345 !!!").language is None
    assert detect("👍", known="ru").language == "ru"
