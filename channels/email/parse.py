"""One raw RFC 5322 message -> what Heliograph keeps of it (stdlib ``email``, policy.default).

Pure functions, no I/O: the listener and the webhook run them the same way, and tests run
them on the recorded mails in ``tests/fixtures/email/``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from typing import Any

from channels.base import BadPayload
from channels.email import text as mailtext

MAX_ID = 255  # provider_message_id / thread_key column width
MAX_FULL_TEXT = 200_000  # characters of the untrimmed body kept in raw
MAX_REFERENCES = 20  # looked up; a References header can list a whole long thread
MAX_HOPS = 50  # more Received headers than this is a mail loop (RFC 5321 section 6.3)
# Headers that say nothing to an agent and only fatten the row.
_NOISE = re.compile(
    r"^(received|dkim-signature|arc-|x-ms-|x-microsoft-|x-google-|x-gm-|x-received|"
    r"authentication-results|received-spf|x-forefront|x-originatororg|thread-index|"
    r"x-ironport|x-mimecast|x-proofpoint|x-spam)",
    re.IGNORECASE,
)
_MSGID = re.compile(r"<([^<>]+)>")
_BULK = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
_DAEMONS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}


@dataclass
class MailAttachment:
    kind: str  # image, audio, video, file
    content_type: str
    filename: str | None
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class ParsedEmail:
    message_id: str
    address: str  # the sender, lower-cased
    name: str | None
    subject: str
    in_reply_to: list[str]
    references: list[str]
    sent_at: datetime | None
    text: str  # trimmed: what the customer wrote in this mail
    full_text: str
    attachments: list[MailAttachment]
    headers: list[list[str]]
    reply_to: str | None = None
    dropped: str | None = None  # "auto-reply", "bounce", "loop": acknowledged, not stored
    bounced_ids: list[str] = field(default_factory=list)  # a bounce's original Message-IDs
    bounce_reason: str = ""

    @property
    def thread_ids(self) -> list[str]:
        """The thread's ids to look up, nearest first: the parent, then References backwards
        (the first, the thread's root, kept even when the list is cut)."""
        ids = [*self.in_reply_to, *reversed(self.references[1:]), *self.references[:1]]
        seen: list[str] = []
        for item in ids:
            if item not in seen:
                seen.append(item)
        if len(seen) > MAX_REFERENCES:
            seen = [*seen[: MAX_REFERENCES - 1], seen[-1]]
        return seen

    @property
    def header_root(self) -> str | None:
        """The thread's first message by the headers alone (RFC 5322 section 3.6.4)."""
        if self.references:
            return self.references[0]
        return self.in_reply_to[0] if self.in_reply_to else None

    def raw(self) -> dict[str, Any]:
        """What ``Message.raw`` keeps: headers and the full text, never attachment bytes."""
        full = self.full_text
        return {
            "message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": self.references,
            "subject": self.subject,
            "from": self.address,
            "from_name": self.name,
            "reply_to": self.reply_to,
            "headers": self.headers,
            "full_text": full[:MAX_FULL_TEXT],
            "full_text_truncated": len(full) > MAX_FULL_TEXT,
        }


def short_id(value: str) -> str:
    """A Message-ID fit for a 255-character column: long ones become their hash."""
    if len(value) <= MAX_ID:
        return value
    return "<sha256." + hashlib.sha256(value.encode()).hexdigest() + "@long-id.invalid>"


def message_ids(value: str | None) -> list[str]:
    """``<a@b> (comment) <c@d>`` -> ``["<a@b>", "<c@d>"]``; folding whitespace removed."""
    if not value:
        return []
    return [short_id("<" + "".join(found.split()) + ">") for found in _MSGID.findall(value)]


def header(msg: Message, name: str) -> str:
    """A header as text; policy.default's parser can choke on malformed ones, so those
    fall back to their raw value."""
    try:
        value = msg.get(name)
    except Exception:  # any parser defect: use the raw value
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    return "" if value is None else str(value).strip()


def parse_message(raw: bytes) -> EmailMessage:
    if not raw.strip():
        raise BadPayload("the body is empty; send one raw RFC 5322 message")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


_ANGLE_ADDR = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>")


def _sender(msg: EmailMessage, envelope_from: str | None) -> tuple[str, str | None]:
    name, address = parseaddr(header(msg, "From"))
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == "from"), "")
    angle = _ANGLE_ADDR.findall(raw)
    if angle and angle[-1].lower() != address.lower():
        # A sloppy client's unquoted display name ("Ann a.b@c.d <a.b@c.d>") fools the
        # parser; the address in angle brackets is the one the person sees and answers.
        address = angle[-1]
        name = str(make_header(decode_header(raw[: raw.rfind("<")].strip().strip('"'))))
    if "@" not in address and envelope_from and "@" in envelope_from:
        address = envelope_from
    if "@" not in address or any(c.isspace() for c in address):
        raise BadPayload("not an email: there is no From address (RFC 5322 section 3.6.2)")
    return address.strip().lower(), (" ".join(name.split()) or None)


def _sent_at(msg: EmailMessage) -> datetime | None:
    try:
        when = msg["Date"].datetime if msg["Date"] is not None else None
    except Exception:  # an unparseable Date is not a reason to lose the mail
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _kept_headers(msg: EmailMessage) -> list[list[str]]:
    kept: list[list[str]] = []
    for name, value in msg.raw_items():
        if _NOISE.match(name) or len(kept) >= 60:
            continue
        kept.append([name, " ".join(str(value).split())[:1000]])
    return kept


# --- automatic mail (RFC 3834) and bounces (RFC 3464) ---------------------------------------


def automatic(msg: EmailMessage, address: str, envelope_from: str | None) -> str | None:
    """Why this mail must not open a conversation (and must never be answered), or None.

    RFC 3834 section 2: responders must not answer a message with ``Auto-Submitted`` other
    than ``no``, nor one from a null return path; section 3.1.3 names ``Precedence: bulk /
    list / junk``. Vacation responders that predate it say ``X-Autoreply`` /
    ``X-Autorespond``. A delivery or read report is ``multipart/report`` (RFC 6522), sent
    from the null path or from MAILER-DAEMON / postmaster."""
    if msg.get_content_type() == "multipart/report":
        return "bounce"
    local = address.split("@", 1)[0]
    if envelope_from == "" or header(msg, "Return-Path") == "<>" or local in _DAEMONS:
        return "bounce"
    auto = header(msg, "Auto-Submitted").split(";", 1)[0].strip().lower()
    if auto and auto != "no":
        return "auto-reply"
    if header(msg, "X-Autoreply") or header(msg, "X-Autorespond"):
        return "auto-reply"
    if header(msg, "Precedence").lower() in _BULK:
        return "auto-reply"
    if len(msg.get_all("Received") or []) > MAX_HOPS:
        return "loop"
    return None


def bounce_details(msg: EmailMessage) -> tuple[list[str], str]:
    """The Message-IDs a delivery report is about and why they failed; ``([], "")`` when it
    reports no failure (``Action: delayed`` / ``delivered`` is not one)."""
    ids: list[str] = []
    reasons: list[str] = []
    failed = False
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in part.get_payload() or []:
                if not isinstance(block, Message):
                    continue
                action = header(block, "Action").lower()
                if action == "failed":
                    failed = True
                    status = header(block, "Status")
                    diagnostic = header(block, "Diagnostic-Code")
                    reasons.append(
                        " ".join("; ".join(x for x in (status, diagnostic) if x).split())
                    )
        elif ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                ids += message_ids(header(inner[0], "Message-ID"))
        elif ctype == "text/rfc822-headers":
            inner = email.message_from_string(str(part.get_content()), policy=email.policy.default)
            ids += message_ids(header(inner, "Message-ID"))
    if not failed:
        return [], ""
    return ids or message_ids(header(msg, "In-Reply-To")), " | ".join(reasons)[:480]


# --- body and attachments -------------------------------------------------------------------


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, AssertionError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _body_text(msg: EmailMessage) -> str:
    plain = msg.get_body(preferencelist=("plain",))
    if plain is not None:
        text = _decoded(plain).replace("\r\n", "\n")
        if str(plain.get_param("format", "")).lower() == "flowed":
            text = mailtext.unflow(text, str(plain.get_param("delsp", "")).lower() == "yes")
        if text.strip():
            return text
    html = msg.get_body(preferencelist=("html",))
    if html is not None:
        return mailtext.html_to_text(_decoded(html))
    return ""


def _kind(content_type: str) -> str:
    maintype = content_type.split("/", 1)[0]
    return maintype if maintype in ("image", "audio", "video") else "file"


def _leaves(part: EmailMessage) -> list[EmailMessage]:
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        return [part]  # a forwarded mail is one attachment, not opened up
    found: list[EmailMessage] = []
    for child in part.iter_parts():
        assert isinstance(child, EmailMessage)
        found += _leaves(child)
    return found


def _attachment_parts(msg: EmailMessage) -> list[EmailMessage]:
    """Every part but the body's text: files, and inline images too, since a screenshot
    pasted into the text is one of those (so are signature logos, a price worth paying)."""
    if not msg.is_multipart():
        return []
    return [
        part
        for part in _leaves(msg)
        if not (
            part.get_content_type() in ("text/plain", "text/html")
            and not part.get_filename()
            and part.get_content_disposition() != "attachment"
        )
    ]


def _attachment(part: EmailMessage) -> MailAttachment | None:
    ctype = part.get_content_type()
    filename: str | None
    if ctype == "message/rfc822":
        inner = part.get_payload()
        forwarded = inner[0] if isinstance(inner, list) and inner else None
        data = forwarded.as_bytes() if isinstance(forwarded, Message) else b""
        filename = part.get_filename() or "forwarded-message.eml"
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
    if not data:
        return None
    return MailAttachment(_kind(ctype), ctype, filename[:255] if filename else None, data)


# --- the whole message ----------------------------------------------------------------------


def synthetic_id(raw: bytes) -> str:
    """For mail without a Message-ID: stable, so a replay of the same bytes is a duplicate."""
    return f"<sha256.{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.invalid>"


def parse_email(
    raw: bytes, envelope_from: str | None = None, own_addresses: tuple[str, ...] = ()
) -> ParsedEmail:
    """Raises BadPayload for what is not a mail; a mail that must not be stored comes back
    with ``dropped`` set."""
    msg = parse_message(raw)
    address, name = _sender(msg, envelope_from)
    ids = message_ids(header(msg, "Message-ID"))
    subject = header(msg, "Subject")
    parsed = ParsedEmail(
        message_id=ids[0] if ids else synthetic_id(raw),
        address=address,
        name=name,
        subject=subject,
        in_reply_to=message_ids(header(msg, "In-Reply-To"))[:1],
        references=message_ids(header(msg, "References")),
        sent_at=_sent_at(msg),
        text="",
        full_text="",
        attachments=[],
        headers=_kept_headers(msg),
        reply_to=(getaddresses([header(msg, "Reply-To")])[0][1].lower() or None)
        if header(msg, "Reply-To")
        else None,
    )
    parsed.dropped = automatic(msg, address, envelope_from)
    if parsed.dropped is None and address in own_addresses:
        parsed.dropped = "loop"  # our own mail came back (a forward, a misconfigured alias)
    if parsed.dropped == "bounce":
        parsed.bounced_ids, parsed.bounce_reason = bounce_details(msg)
    if parsed.dropped:
        return parsed
    full = mailtext.tidy(_body_text(msg))
    parsed.full_text = full
    parsed.text = mailtext.trim_reply(full, forward=mailtext.is_forward_subject(subject))
    for part in _attachment_parts(msg):
        attachment = _attachment(part)
        if attachment is not None:
            parsed.attachments.append(attachment)
    if not parsed.text and not parsed.attachments:
        parsed.text = mailtext.normalize_subject(subject)  # "Subject: call me back", no body
    return parsed
