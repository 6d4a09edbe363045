"""What is kept of a mail's text: quoted history and signatures cut, HTML made readable.

Each case is the shape a real client writes (the attribution lines are theirs, word for
word, including Gmail's wrap after the address's ``<`` and its localised forms)."""

from __future__ import annotations

import pytest

from channels.email.text import (
    html_to_text,
    is_forward_subject,
    normalize_subject,
    trim_reply,
    unflow,
)

REPLY = "Yes, Thursday works for us."


@pytest.mark.parametrize(
    ("history", "client"),
    [
        (
            "On Tue, Mar 5, 2024 at 11:20\u202fAM Support <support@heliograph.example> wrote:\n"
            "> Would Thursday work?",
            "Gmail",
        ),
        (
            "On Tue, Mar 5, 2024 at 11:20 AM Heliograph Support <\n"
            "support@heliograph.example> wrote:\n\n> Would Thursday work?",
            "Gmail, wrapped",
        ),
        (
            "Am Di., 5. M\u00e4rz 2024 um 11:20 Uhr schrieb Heliograph Support <\n"
            "support@heliograph.example>:\n\n> Passt Donnerstag?",
            "Gmail, German",
        ),
        (
            "Le mar. 5 mars 2024 \u00e0 11:20, Heliograph Support <support@heliograph.example> "
            "a \u00e9crit :\n> Jeudi vous convient ?",
            "Gmail, French",
        ),
        (
            "\u0432\u0442, 5 \u043c\u0430\u0440. 2024\u202f\u0433. \u0432 11:20, Heliograph "
            "Support <support@heliograph.example>:\n\n"
            "> \u0427\u0435\u0442\u0432\u0435\u0440\u0433?",
            "Gmail, Russian (no verb)",
        ),
        (
            "On 5 Mar 2024, at 11:20, Heliograph Support <support@heliograph.example> wrote:\n\n"
            "> Would Thursday work?",
            "Apple Mail",
        ),
        (
            "On 05/03/2024 11:20, Heliograph Support wrote:\n> Would Thursday work?",
            "Thunderbird",
        ),
        (
            "-----Original Message-----\nFrom: Heliograph Support [mailto:support@heliograph."
            "example]\nSent: Tuesday, March 5, 2024 11:20 AM\nTo: Tom\nSubject: Delivery\n\n"
            "Would Thursday work?",
            "Outlook desktop, plain text",
        ),
        (
            "________________________________\nFrom: Heliograph Support <support@heliograph."
            "example>\nSent: Tuesday, March 5, 2024 11:20\nTo: Tom <tom@contoso.example>\n"
            "Subject: Delivery\n\nWould Thursday work?",
            "Outlook on the web",
        ),
        (
            "Von: Heliograph Support <support@heliograph.example>\nGesendet: Dienstag, 5. "
            "M\u00e4rz 2024 11:20\nAn: Tom\nBetreff: Lieferung\n\nPasst Donnerstag?",
            "Outlook, German",
        ),
        (
            "Den tis 5 mars 2024 kl 11:20 skrev Heliograph Support <support@heliograph.example>:"
            "\n\n> Passar torsdag?",
            "Gmail, Swedish",
        ),
        (
            "De: Heliograph Support <support@heliograph.example>\nEnviada em: ter\u00e7a-feira, "
            "5 de mar\u00e7o de 2024 11:20\nPara: Tom\nAssunto: Entrega\n\nQuinta-feira serve?",
            "Outlook, Portuguese",
        ),
        (
            "\u041e\u0442: Heliograph Support <support@heliograph.example>\n"
            "\u041e\u0442\u043f\u0440\u0430\u0432\u043b\u0435\u043d\u043e: 5 \u043c\u0430\u0440"
            "\u0442\u0430 2024 \u0433. 11:20\n\u041a\u043e\u043c\u0443: Tom\n\n"
            "\u0427\u0435\u0442\u0432\u0435\u0440\u0433?",
            "Outlook, Russian",
        ),
        ("> Would Thursday work?\n>\n> Ana", "bare quote"),
    ],
)
def test_quoted_history_is_cut(history: str, client: str) -> None:
    assert trim_reply(f"{REPLY}\n\n{history}\n") == REPLY, client


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nTom M\u00fcller\nContoso GmbH",
        "--\nTom",
        "Sent from my iPhone",
        "Get Outlook for Android",
        "Von meinem iPhone gesendet",
    ],
)
def test_signatures_are_cut(signature: str) -> None:
    assert trim_reply(f"{REPLY}\n\n{signature}") == REPLY


def test_what_is_not_history_is_kept() -> None:
    interleaved = "> When can you come?\nThursday.\n> Which address?\nThe office, 3rd floor."
    assert trim_reply(interleaved) == interleaved  # answers between quotes
    sentence = "On Monday my colleague wrote:\nthe lamp is broken. Can you help?"
    assert trim_reply(sentence) == sentence  # no date, no address, nothing quoted
    dashes = "Steps:\n--\n" + "\n".join(f"step {i}" for i in range(30))
    assert trim_reply(dashes) == dashes  # a long text after "--" is no signature
    assert trim_reply("> only a quote") == "> only a quote"  # never trimmed to nothing


def test_a_forward_keeps_the_forwarded_mail() -> None:
    forwarded = (
        "See below.\n\n________________________________\nFrom: Courier <noreply@courier."
        "example>\nSent: Monday\nTo: Tom\nSubject: Delivery failed\n\nWe could not deliver."
    )
    assert is_forward_subject("FW: Delivery failed") and is_forward_subject("Fwd: x")
    assert trim_reply(forwarded, forward=True) == forwarded


def test_subjects_are_normalised() -> None:
    assert normalize_subject("Re: AW: Fwd: Order  1234") == "Order 1234"
    assert normalize_subject("RE[2]: SV: VS: Tilaus") == "Tilaus"
    assert normalize_subject("Regarding your order") == "Regarding your order"


def test_html_becomes_readable_text() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>x</title></head><body>"
        "<p>Hello&nbsp;team,</p><p>See <a href='https://track.example/1Z'>tracking</a> and "
        "<a href='mailto:a@b.c'>a@b.c</a>.</p><ul><li>lamp</li><li>shade</li></ul>"
        "<table><tr><td>Order</td><td>1234</td></tr></table>"
        "<blockquote type='cite'>Quoted<br>text</blockquote><script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == (
        "Hello team,\n\nSee tracking (https://track.example/1Z) and a@b.c.\n\n- lamp\n- shade"
        "\n\nOrder 1234\n\n> Quoted\n> text"
    )


def test_format_flowed_lines_are_joined() -> None:
    flowed = "This line goes on \nand on.\n> quoted and \n> continued\n-- \nSig"
    assert unflow(flowed) == "This line goes on and on.\n> quoted and continued\n-- \nSig"
    assert unflow("glued\u00a0 \nword", delsp=True) == "glued\u00a0word"
