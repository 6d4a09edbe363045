"""The detector knows only the configured languages (HELIOGRAPH_LANGUAGE_CANDIDATES, #17).

lingua holds 25-50 MB per language written in Latin or Cyrillic letters, so a process
loads only what the setting lists; a code lingua does not know stops the process when
the settings are read, not a detection job later.
"""

# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from heliograph.settings import Settings, get_settings, reset_settings
from transcription import language

pytest.importorskip("lingua")

# One support message in each language the demo's customers and team write
# (service/demo.py, service/demo_data/team.yaml).
DEMO = {
    "en": "Hi, I was charged twice for the course, can you check?",
    "es": "Hola, no puedo entrar a mi curso desde ayer",
    "pt": "Olá, não consigo acessar a aula de hoje, o link não funciona",
    "fr": "Bonjour, je n'arrive pas à télécharger le cahier de la leçon",
    "de": "Hallo, ich wurde für den Kurs zweimal belastet",
    "ru": "Здравствуйте, не могу войти в личный кабинет после обновления",
    "uk": "Добрий день, я не можу знайти запис вчорашнього заняття",
    "ms": "Hai, saya tak boleh log masuk ke akaun saya sejak semalam",
    "zh": "你好，我的课程付款被扣了两次，请帮我查一下",
    "ja": "こんにちは、昨日からアプリにログインできません",
    "ko": "안녕하세요, 어제부터 앱에 로그인할 수 없어요",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("HELIOGRAPH_LANGUAGE_CANDIDATES", raising=False)
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def _configured() -> tuple[str, ...]:
    return tuple(get_settings().language_candidates)


def test_the_default_covers_the_demo_and_the_detector_knows_exactly_it(
    env: pytest.MonkeyPatch,
) -> None:
    configured = _configured()
    assert set(DEMO) <= set(configured)
    assert language.known_languages(configured) == tuple(sorted(configured))
    for code, text in DEMO.items():
        found = language.detect(text, candidates=configured)
        assert (found.language, found.decided) == (code, True), (code, text, found)
        # Only configured languages are ever scored.
        assert {c for c, _ in language.confidences(text, configured)} <= set(configured)


def test_a_configured_list_is_all_the_detector_knows(env: pytest.MonkeyPatch) -> None:
    env.setenv("HELIOGRAPH_LANGUAGE_CANDIDATES", "EN, es pt")
    configured = _configured()
    assert configured == ("en", "es", "pt")
    assert language.known_languages(configured) == ("en", "es", "pt")
    scored = language.confidences(DEMO["de"], configured)
    assert {c for c, _ in scored} <= {"en", "es", "pt"}
    assert language.detect(DEMO["es"], known="en", candidates=configured).language == "es"


def test_json_lists_and_all_are_accepted(env: pytest.MonkeyPatch) -> None:
    env.setenv("HELIOGRAPH_LANGUAGE_CANDIDATES", '["de", "fr"]')
    assert _configured() == ("de", "fr")
    reset_settings()
    env.setenv("HELIOGRAPH_LANGUAGE_CANDIDATES", "all")
    assert _configured() == ("all",)
    assert len(language.known_languages(("all",))) == 75


def test_a_single_language_needs_no_detector(env: pytest.MonkeyPatch) -> None:
    env.setenv("HELIOGRAPH_LANGUAGE_CANDIDATES", "de")
    configured = _configured()
    assert language.confidences("Hello there, how are you?", configured) == [("de", 1.0)]
    assert language.detect("Wo ist meine Bestellung?", candidates=configured).language == "de"


@pytest.mark.parametrize("value", ["en,xx", "english", "[]", "all,en", "no"])
def test_an_unknown_code_is_refused_when_the_settings_are_read(
    env: pytest.MonkeyPatch, value: str
) -> None:
    env.setenv("HELIOGRAPH_LANGUAGE_CANDIDATES", value)
    with pytest.raises(ValidationError, match="HELIOGRAPH_LANGUAGE_CANDIDATES"):
        Settings()


def test_the_serve_command_stops_at_start_up_with_the_reason(env: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    env.setenv("HELIOGRAPH_LANGUAGE_CANDIDATES", "en,xx")
    done = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; raise SystemExit(main())", "serve"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "'xx' is not a language lingua detects" in done.stderr


def test_detect_refuses_codes_lingua_does_not_know() -> None:
    with pytest.raises(language.UnknownLanguageCode):
        language.detect("Hello there, how are you?", candidates=("en", "xx"))
    with pytest.raises(language.UnknownLanguageCode):
        language.detect("Hello there, how are you?", candidates=())
