"""A local SMTP sink for Heliograph's outbound mail, and a customer who writes in by email.

The sink (aiosmtpd on the sandbox's own event loop) listens on
``HELIOGRAPH_SANDBOX_SMTP_PORT``, else on the port of ``HELIOGRAPH_SANDBOX_URL`` + 25 (what
``heliograph demo`` points ``HELIOGRAPH_SMTP_PORT`` at). Each accepted mail is recorded as
``("email", "send", {from, to, subject, message_id, in_reply_to, references, text, ...})``
for the sandbox page and ``GET /_sandbox/calls?provider=email``. While a failure plan for
``email`` is in force (``POST /_sandbox/fail``) it answers as a busy server does: ``451``
(mode 500, timeout after the wait) or ``421`` (mode 429). Recipients at the reserved
``.invalid`` TLD (RFC 2606) get ``550 5.1.1`` user unknown, a permanent refusal.

``POST /_sandbox/say/email`` ``{"text", "from", "subject"?, "new_thread"?}`` writes a mail
from the customer to Heliograph as their provider's MTA would: over SMTP to
``HELIOGRAPH_SMTP_LISTEN_PORT`` when it is set, else to ``POST /webhooks/email`` with the
bearer secret. Unless told to start a new thread it answers the last mail the sink got for
that address, the way a mail client's "Reply" does: ``Re:`` subject, In-Reply-To,
References and the quoted text under an ``On ... wrote:`` line.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any
from urllib.parse import urlparse

import aiosmtplib
import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from channels.email.settings import EmailSettings
from heliograph.settings import get_settings
from sandbox.core import SAY_CHANNELS, state

log = logging.getLogger(__name__)
SAY_CHANNELS.append("email")


def sink_port() -> int:
    configured = os.environ.get("HELIOGRAPH_SANDBOX_SMTP_PORT")
    if configured:
        return int(configured)
    return (urlparse(get_settings().sandbox_url).port or 8900) + 25


class SinkHandler:
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower().endswith(".invalid"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failing = await state.maybe_fail("email")
        if failing is not None:
            if failing.status_code == 429:
                return "421 4.7.0 Too many messages, slow down and try again later"
            return "451 4.3.0 Temporary local problem, please try again later"
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        state.record("email", "send", _summary(raw, envelope))
        return "250 2.0.0 OK: queued"


def _summary(raw: bytes, envelope: Envelope) -> dict[str, Any]:
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    body = mail.get_body(preferencelist=("plain",)) if isinstance(mail, EmailMessage) else None
    text = body.get_content() if body is not None else ""
    return {
        "mail_from": envelope.mail_from,
        "rcpt_to": list(envelope.rcpt_tos),
        "from": str(mail.get("From", "")),
        "to": str(mail.get("To", "")),
        "subject": str(mail.get("Subject", "")),
        "message_id": str(mail.get("Message-ID", "")),
        "in_reply_to": str(mail.get("In-Reply-To", "")),
        "references": str(mail.get("References", "")).split(),
        "auto_submitted": str(mail.get("Auto-Submitted", "")) or None,
        "date": str(mail.get("Date", "")),
        "text": text.replace("\r\n", "\n").strip(),
        "size": len(raw),
        "attachments": [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "size": len(part.get_payload(decode=True) or b""),
            }
            for part in (mail.iter_attachments() if isinstance(mail, EmailMessage) else ())
        ],
    }


@asynccontextmanager
async def _sink(app: FastAPI) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    port = sink_port()
    server: asyncio.AbstractServer | None = None
    if port > 0:
        handler = SinkHandler()
        try:
            server = await loop.create_server(
                lambda: SMTP(handler, hostname="sandbox.invalid", loop=loop),
                host="127.0.0.1",
                port=port,
            )
        except OSError as exc:  # a dev tool: the HTTP fakes still work without it
            log.warning("sandbox SMTP sink not started on port %s: %s", port, exc)
    try:
        yield
    finally:
        if server is not None:
            server.close()


router = APIRouter(tags=["email"], lifespan=_sink)


class SayIn(BaseModel):
    text: str
    sender: str = Field(default="1001", alias="from")
    name: str | None = None
    subject: str | None = None
    new_thread: bool = False


def _address(sender: str) -> str:
    return sender if "@" in sender else f"customer-{sender}@sandbox.example"


def _last_mail_to(address: str) -> dict[str, Any] | None:
    for call in reversed(state.calls):
        if call.provider == "email" and address in [r.lower() for r in call.params["rcpt_to"]]:
            return call.params
    return None


def customer_mail(body: SayIn, to: str) -> EmailMessage:
    """What a mail client sends: a fresh mail, or a reply quoting the last one we got."""
    address = _address(body.sender).lower()
    mail = EmailMessage()
    mail["From"] = formataddr((body.name or f"Sandbox customer {body.sender}", address))
    mail["To"] = to
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@sandbox.example>"
    last = None if body.new_thread or body.subject else _last_mail_to(address)
    if last is None:
        mail["Subject"] = body.subject or "Question from the sandbox"
        mail.set_content(body.text)
        return mail
    mail["Subject"] = (
        last["subject"] if last["subject"].lower().startswith("re:") else ("Re: " + last["subject"])
    )
    mail["In-Reply-To"] = last["message_id"]
    mail["References"] = " ".join([*last["references"], last["message_id"]])
    quoted = "\n".join("> " + line if line else ">" for line in last["text"].split("\n"))
    when = formatdate(localtime=True)
    mail.set_content(f"{body.text}\n\nOn {when}, {last['from']} wrote:\n{quoted}\n")
    return mail


@router.post("/_sandbox/say/email", include_in_schema=False)
async def say(body: SayIn) -> JSONResponse:
    settings = EmailSettings.get()
    to = settings.email_address or "support@heliograph.example"
    mail = customer_mail(body, to)
    message_id = str(mail["Message-ID"])
    if settings.smtp_listen_port > 0:
        try:
            _, answer = await aiosmtplib.send(
                mail, hostname=settings.smtp_listen_host, port=settings.smtp_listen_port
            )
        except aiosmtplib.SMTPException as exc:
            return JSONResponse({"via": "smtp", "error": str(exc)}, status_code=502)
        return JSONResponse({"via": "smtp", "message_id": message_id, "answer": answer})
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{get_settings().public_url}/webhooks/email",
            content=mail.as_bytes(),
            headers={
                "Content-Type": "message/rfc822",
                "Authorization": f"Bearer {settings.email_webhook_secret}",
            },
        )
    return JSONResponse(
        {"via": "webhook", "message_id": message_id, "heliograph": response.json()},
        status_code=response.status_code,
    )
