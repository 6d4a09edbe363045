"""What the phone-number channels share (SMS and WhatsApp, through Twilio or Meta's Cloud API).

- **Consent keywords.** A customer who texts STOP (or STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT)
  is opted out of that channel identity; START (or UNSTOP, YES) opts them back in. These are
  Twilio's default opt-out and opt-in keywords
  (https://help.twilio.com/articles/223134027); the body must be the keyword alone, any case.
  The keyword message itself is stored like any other, and the consent change is committed in
  the same transaction, so a stored STOP is always an honoured STOP. The outbox then refuses
  every reply to an opted-out identity ("the customer opted out of sms (STOP)").
- **Provider status updates** (Twilio's StatusCallback, Cloud API ``statuses``) applied to the
  reply they name, with the provider's error code kept on the message for the agent.
- **Templates.** Outside WhatsApp's 24-hour customer-service window only an approved template
  may be sent. An agent sends one from any surface (web, Slack thread, Telegram) by replying
  ``/template NAME [LANGUAGE] [PARAMETER ...]``; quote a parameter with spaces. The WhatsApp
  providers turn that reply into the template message; on SMS it is plain text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from crm_core.identity import set_opt_out
from heliograph import jobs
from heliograph.db import get_db
from inbox.ingest import AcceptResult, InboundMessage, accept_in
from inbox.outbox import DeliveryRefused, record_status

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


@dataclass
class Stored:
    result: AcceptResult
    opted_out: bool | None = None  # the consent the message changed, if it was a keyword


async def store(
    items: list[InboundMessage],
    consent: Callable[[InboundMessage], bool | None] = consent_change,
) -> list[Stored]:
    """Store each message and apply its consent change in the same transaction.

    A replayed message (the provider retrying) changes nothing: an old STOP replayed after a
    newer START must not opt the customer out again.
    """
    db = get_db()
    stored: list[Stored] = []
    for item in items:
        async with db.session() as session:
            result = await accept_in(session, item)
            change, applied = consent(item), None
            if change is not None and not result.duplicate:
                await set_opt_out(session, item.channel, item.sender.external_id, change)
                applied = change
            await session.commit()
        stored.append(Stored(result, applied))
    if any(not s.result.duplicate for s in stored):
        jobs.wake_workers()
    return stored


@dataclass(frozen=True)
class StatusUpdate:
    """A provider saying what became of a message we sent."""

    channel: str
    external_id: str
    status: str  # sent, delivered, read, failed
    error: str | None = None
    recipient_opted_out: str | None = None  # the recipient's external id, when the cause is STOP


@dataclass
class StatusOutcome:
    applied: int = 0
    unknown: list[str] = field(default_factory=list)


async def apply_statuses(updates: list[StatusUpdate]) -> StatusOutcome:
    """Record every update in one transaction; ids we never sent are reported, not fatal."""
    outcome = StatusOutcome()
    if not updates:
        return outcome
    async with get_db().session() as session:
        for update in updates:
            error = update.error[:500] if update.error else None  # the column's size
            if await record_status(
                session, update.channel, update.external_id, update.status, error
            ):
                outcome.applied += 1
            else:
                outcome.unknown.append(update.external_id)
            if update.recipient_opted_out:
                await set_opt_out(session, update.channel, update.recipient_opted_out, True)
        await session.commit()
    return outcome


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
