"""What the phone-number channels share (SMS and WhatsApp, through Twilio or Meta's Cloud API).

- **Consent keywords.** A customer who texts STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT)
  is opted out of that channel identity; START (or UNSTOP, YES) opts them back in. These are
  Twilio's default opt-out and opt-in keywords
  (https://help.twilio.com/articles/223134027); the body must be the keyword alone, any case.
  The adapters put the change on the message (``InboundMessage.consent``); ``inbox.intake``
  stores the keyword message like any other and commits the change in the same transaction,
  so a stored STOP is always an honoured STOP. The outbox then refuses
  every reply to an opted-out identity ("the customer opted out of sms (STOP)").
- **Provider status updates** (Twilio's StatusCallback, Cloud API ``statuses``) are parsed into
  ``inbox.intake.StatusUpdate`` items, applied to the reply they name, with the provider's
  error code kept on the message for the agent.
- **Templates.** Outside WhatsApp's 24-hour customer-service window only an approved template
  may be sent. An agent sends one from any surface (web, Slack thread, Telegram) by replying
  ``/template NAME [LANGUAGE] [PARAMETER ...]``; quote a parameter with spaces. The WhatsApp
  providers turn that reply into the template message; on SMS it is plain text.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from inbox.ingest import InboundMessage
from inbox.outbox import DeliveryRefused

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
TEMPLATE_COMMAND = "/template"
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")  # en, pt_BR, fil: WhatsApp's language codes


def media_kind(content_type: str | None) -> str:
    """The attachment kind the inbox knows (image, audio, video, file) for a MIME type."""
    major = (content_type or "").split("/", 1)[0].lower()
    return major if major in ("image", "audio", "video") else "file"


def consent_change(message: InboundMessage) -> bool | None:
    """``True`` for an opt-out keyword, ``False`` for an opt-in one, else ``None``."""
    word = message.text.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return True
    if word in OPT_IN_KEYWORDS:
        return False
    return None


@dataclass(frozen=True)
class Template:
    name: str
    language: str | None
    parameters: list[str]


def parse_template(text: str) -> Template | None:
    """``/template order_update en_US "Ada Lovelace" 4521`` -> a Template; other text -> None."""
    stripped = text.strip()
    if stripped != TEMPLATE_COMMAND and not stripped.startswith(TEMPLATE_COMMAND + " "):
        return None
    try:
        words = shlex.split(stripped)[1:]
    except ValueError as exc:  # an unclosed quote
        raise DeliveryRefused(f"cannot read the template command: {exc}") from exc
    if not words:
        raise DeliveryRefused("a template needs a name: /template NAME [LANGUAGE] [PARAMETER ...]")
    name, rest = words[0], words[1:]
    language = rest.pop(0) if rest and _LANGUAGE.match(rest[0]) else None
    return Template(name, language, rest)
