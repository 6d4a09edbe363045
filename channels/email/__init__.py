"""The email channel: mail in by SMTP listener or ``POST /webhooks/email``, out by SMTP.

Inbound, both ways end in ``receive(raw)``: parse (``parse.py``), drop automatic mail
(RFC 3834) and bounces (RFC 3464, which mark our failed reply instead), keep the
attachments' bytes under ``media_dir``, find the thread, then ``inbox.intake.receive``.
The dedupe key is the Message-ID; the sender is channel ``email``, external id the
lower-cased address, with ``SenderProfile.email`` so a customer known by that address on
another channel is the same customer.

Sender authentication (``auth.py``, ``HELIOGRAPH_EMAIL_AUTH``): a mail whose SPF/DKIM/DMARC
does not pass is stored apart (``unverified.py``): its own profile and conversation, marked
``unverified_sender``, with a note saying what failed, never in the profile or thread of the
address it claims. A mail with no Authentication-Results joins as before unless
``HELIOGRAPH_EMAIL_AUTH_REQUIRED`` (see ``auth.py`` for why).

Threading (RFC 5322 section 3.6.4): a mail whose In-Reply-To / References name a message
we stored or sent joins that conversation (its ``thread_key``); otherwise the thread key
is the first id in References (the thread's root), or the mail's own Message-ID when it
starts a thread. Clients that drop the headers but keep "Re: <subject>" are matched by
subject among the sender's conversations.

Outbound replies carry In-Reply-To (the customer's latest Message-ID), References (theirs
plus that id) and "Re: <subject>", so they land in the customer's thread in their mail
client, and a Message-ID derived from the reply's row, so a retry after a crash re-sends
the same id and the recipient's client shows it once. No ``Auto-Submitted`` on an agent's
reply: it is written by a person, and RFC 3834 section 5 reserves ``auto-replied`` for
automatic responses (marking human replies so would let the customers' own responders and
filters treat them as machine mail). Automatic messages (author "system", e.g. "we'll
answer at 09:00 your time") do carry ``Auto-Submitted: auto-replied``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

import aiosmtplib

from channels import signatures
from channels.base import BadSignature, ChannelAdapter, WebhookRequest, register
from channels.email import unverified
from channels.email.auth import SenderCheck, check_sender
from channels.email.parse import MailAttachment, ParsedEmail, parse_email
from channels.email.settings import EmailSettings
from channels.email.text import is_reply_subject, normalize_subject
from crm_core.identity import SenderProfile
from heliograph import jobs
from heliograph.db import get_db, utcnow
from heliograph.settings import get_settings
from inbox import intake
from inbox.edits import InboundEdit
from inbox.ingest import AcceptResult, InboundAttachment, InboundMessage
from inbox.media import FetchedMedia, MediaRef, media_dir, register_fetcher
from inbox.outbox import (
    DeliveryRefused,
    DeliveryResult,
    DeliveryRetry,
    OutboundMessage,
)
from inbox.threads import thread_key_by_subject, thread_key_of

log = logging.getLogger(__name__)

CHANNEL = "email"
_OUR_ID_PREFIX = "<heliograph."
MAX_SENT_REFERENCES = 20  # RFC 5322 lets a long References list lose its middle


def our_domain(settings: EmailSettings) -> str:
    if settings.email_domain:
        return settings.email_domain
    if "@" in settings.email_address:
        return settings.email_address.rsplit("@", 1)[1]
    return "heliograph.invalid"


def outbound_message_id(message: OutboundMessage, settings: EmailSettings) -> str:
    """Derived from the reply's row alone, so every try of one reply has the same id; the
    hash keeps ids apart across databases (a restored or second installation)."""
    seed = f"{message.message_id}|{message.conversation_id}|{message.recipient_id}|{message.text}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:16]
    return f"{_OUR_ID_PREFIX}{message.message_id}.{digest}@{our_domain(settings)}>"


# --- inbound ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailOutcome:
    accepted: AcceptResult | None
    dropped: str | None = None  # why nothing was stored: auto-reply, bounce, loop
    message_id: str = ""


def _parse(raw: bytes, envelope_from: str | None) -> ParsedEmail:
    settings = EmailSettings.get()
    own = tuple(a.lower() for a in (settings.email_address,) if a)
    parsed = parse_email(raw, envelope_from, own)
    if parsed.dropped is None and parsed.message_id.startswith(_OUR_ID_PREFIX):
        if parsed.message_id.endswith(f"@{our_domain(settings)}>"):
            parsed.dropped = "loop"  # one of our own replies, delivered back to us
    return parsed


def _inbound(
    parsed: ParsedEmail, thread_key: str, check: SenderCheck | None = None
) -> InboundMessage:
    raw = parsed.raw()
    if check is not None and check.checked:
        raw["sender_check"] = {"verified": check.verified, "summary": check.summary}
    return InboundMessage(
        channel=CHANNEL,
        provider_message_id=parsed.message_id,
        sender=SenderProfile(
            channel=CHANNEL, external_id=parsed.address, name=parsed.name, email=parsed.address
        ),
        text=parsed.text,
        sent_at=parsed.sent_at,
        attachments=[_attachment_row(a) for a in parsed.attachments],
        thread_key=thread_key,
        subject=normalize_subject(parsed.subject)[:300] or None,
        raw=raw,
    )


def _attachment_row(attachment: MailAttachment) -> InboundAttachment:
    # The bytes are already on disk (``_keep_bytes``); the fetch job finds them by digest.
    return InboundAttachment(
        kind=attachment.kind,
        content_type=attachment.content_type[:100],
        filename=attachment.filename,
        size=len(attachment.data),
        provider_file_id=f"sha256:{attachment.digest}",
    )


def _media_path(digest: str) -> str:
    # The path inbox.media.fetch_attachment stores a file under (content-addressed).
    return str(media_dir() / digest[:2] / digest)


def _keep_bytes(attachments: list[MailAttachment]) -> None:
    for attachment in attachments:
        path = _media_path(attachment.digest)
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.partial"
        with open(partial, "wb") as f:
            f.write(attachment.data)
        os.replace(partial, path)  # never a half-written file under the final name


async def fetch_media(ref: MediaRef) -> FetchedMedia:
    """The bytes came inside the mail and were written before the message was accepted."""
    digest = (ref.provider_file_id or "").removeprefix("sha256:")
    if len(digest) != 64:
        raise jobs.PermanentFailure("the email attachment has no content digest")
    path = _media_path(digest)
    try:
        data = await asyncio.to_thread(_read, path)
    except FileNotFoundError as exc:
        raise jobs.PermanentFailure(f"the attachment's bytes are not in {path}") from exc
    return FetchedMedia(data, ref.content_type, ref.filename)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def _thread_key(parsed: ParsedEmail, external_id: str) -> str:
    async with get_db().read_session() as session:
        known = await thread_key_of(session, CHANNEL, parsed.thread_ids)
        if known is not None:
            return known
        if parsed.header_root is not None:
            return parsed.header_root
        if is_reply_subject(parsed.subject):
            by_subject = await thread_key_by_subject(
                session, CHANNEL, external_id, normalize_subject(parsed.subject)
            )
            if by_subject is not None:
                return by_subject
    return parsed.message_id


async def _record_bounce(parsed: ParsedEmail) -> None:
    """A delivery report about one of our replies marks it failed, with the server's reason."""
    if not parsed.bounced_ids:
        return
    reason = f"bounced: {parsed.bounce_reason or 'the recipient server refused it'}"
    updates = [intake.StatusUpdate(CHANNEL, i, "failed", reason) for i in parsed.bounced_ids]
    outcome = await intake.receive(updates)
    for message_id in parsed.bounced_ids:
        if message_id not in outcome.unknown_statuses:
            log.info("email reply %s bounced: %s", message_id, parsed.bounce_reason)


async def receive(raw: bytes, envelope_from: str | None = None) -> EmailOutcome:
    """Store one raw mail; returns once it is committed (or deliberately dropped).

    Raises BadPayload for what is not a mail; anything else means "try again later"."""
    parsed = await asyncio.to_thread(_parse, raw, envelope_from)
    if parsed.dropped is not None:
        log.info(
            "email %s from %s dropped (%s), subject %r",
            parsed.message_id,
            parsed.address,
            parsed.dropped,
            parsed.subject[:80],
        )
        if parsed.dropped == "bounce":
            await _record_bounce(parsed)
        return EmailOutcome(None, parsed.dropped, parsed.message_id)
    check = await asyncio.to_thread(check_sender, raw, parsed.address, EmailSettings.get())
    if check.verified:
        thread_key = unverified.verified_key(await _thread_key(parsed, parsed.address))
        msg = _inbound(parsed, thread_key, check)
    else:
        # Not authenticated: never into the profile or thread of the address it claims.
        apart_id = unverified.unverified_key(parsed.address)
        thread_key = await _thread_key(parsed, apart_id)
        async with get_db().read_session() as session:
            msg = await unverified.kept_apart_with_note(
                session, _inbound(parsed, thread_key, check), parsed.address, check
            )
        log.info(
            "email %s from %s kept apart: %s", parsed.message_id, parsed.address, check.summary
        )
    await asyncio.to_thread(_keep_bytes, parsed.attachments)
    (result,) = (await intake.receive([msg])).accepted  # committed when it returns
    return EmailOutcome(result, None, parsed.message_id)


# --- outbound ---------------------------------------------------------------------------------


def compose(message: OutboundMessage, settings: EmailSettings) -> EmailMessage:
    """The reply as a mail that threads under the customer's latest message."""
    context = message.reply_context or {}
    parent = context.get("message_id")
    references = [r for r in context.get("references") or [] if isinstance(r, str)]
    if parent and parent not in references:
        references.append(parent)
    subject = message.subject or normalize_subject(str(context.get("subject") or ""))
    mail = EmailMessage()
    mail["From"] = settings.email_address
    name = context.get("from_name")
    to = unverified.mail_address(message.recipient_id)
    mail["To"] = formataddr((name, to)) if name else to
    mail["Subject"] = f"Re: {subject}" if subject else "Re: your message"
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = outbound_message_id(message, settings)
    if message.author_type == "system":
        mail["Auto-Submitted"] = "auto-replied"
    if parent:
        mail["In-Reply-To"] = parent
    if references:
        if len(references) > MAX_SENT_REFERENCES:  # keep the root and the latest ones
            references = [references[0], *references[-(MAX_SENT_REFERENCES - 1) :]]
        mail["References"] = " ".join(references)
    mail.set_content(message.text)
    for sent in message.attachments:  # #16: each file a MIME part (multipart/mixed)
        maintype, _, subtype = sent.content_type.partition("/")
        mail.add_attachment(
            sent.read(),
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=sent.filename,
        )
    return mail


def _classify(exc: aiosmtplib.SMTPException) -> Exception:
    """4xx: the server asks us to come back (DeliveryRetry); 5xx: it refuses for good."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        answer = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if codes and all(c >= 500 for c in codes):
            return DeliveryRefused(f"the mail server refused the recipient: {answer}")
        return DeliveryRetry(f"the mail server deferred the recipient: {answer}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        answer = f"{exc.code} {exc.message}"
        if exc.code >= 500:
            return DeliveryRefused(f"the mail server refused the message: {answer}")
        return DeliveryRetry(f"the mail server answered {answer}")
    return DeliveryRetry(f"could not talk to the mail server: {exc!r}")


class EmailChannel(ChannelAdapter):
    name = CHANNEL

    def enabled(self) -> bool:
        settings = EmailSettings.get()
        return bool(settings.email_address and settings.smtp_host)

    async def verify(self, request: WebhookRequest) -> None:
        """``Authorization: Bearer <HELIOGRAPH_EMAIL_WEBHOOK_SECRET>``; closed when unset."""
        secret = EmailSettings.get().email_webhook_secret
        if not secret:
            raise BadSignature(
                "HELIOGRAPH_EMAIL_WEBHOOK_SECRET is not set, so /webhooks/email accepts nothing"
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise BadSignature("send the secret as Authorization: Bearer <secret>")
        if not signatures.matches(token.strip(), secret):
            raise BadSignature("the bearer secret is wrong")

    def parse(self, request: WebhookRequest) -> list[InboundMessage | InboundEdit]:
        """The mail by its headers alone (no database: the webhook route uses ``receive``,
        which also looks the thread up among stored messages)."""
        parsed = _parse(request.body, None)
        if parsed.dropped is not None:
            return []
        return [_inbound(parsed, parsed.header_root or parsed.message_id)]

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        settings = EmailSettings.get()
        if not settings.smtp_host:
            raise DeliveryRefused("HELIOGRAPH_SMTP_HOST is not set: email cannot be sent")
        if not settings.email_address:
            raise DeliveryRefused("HELIOGRAPH_EMAIL_ADDRESS is not set: no From for the reply")
        mail = compose(message, settings)
        implicit_tls = settings.smtp_port == 465  # submissions port (RFC 8314 section 3.3)
        try:
            await aiosmtplib.send(
                mail,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
                use_tls=implicit_tls,
                start_tls=settings.smtp_starttls and not implicit_tls,
                timeout=get_settings().outbound_timeout_s,
            )
        except aiosmtplib.SMTPException as exc:
            raise _classify(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise DeliveryRetry(f"could not reach {settings.smtp_host}: {exc!r}") from exc
        return DeliveryResult(external_id=str(mail["Message-ID"]), status="sent")


channel = EmailChannel()
register(channel)
register_fetcher(CHANNEL, fetch_media)

from channels.email import listener  # noqa: E402,F401  (registers the start-up hook)
