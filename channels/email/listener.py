"""The SMTP listener: customers' mail straight from their provider's MTA (aiosmtpd).

Started by a ``channels.base`` start-up hook when ``HELIOGRAPH_SMTP_LISTEN_PORT`` > 0, on the
service's own event loop (not aiosmtpd's ``Controller`` thread), so it shares the database
engine. The answer to DATA is the durability contract of SMTP (RFC 5321 section 4.2.5):

- ``250`` only after the message is committed (or deliberately dropped: auto-replies and
  bounces are acknowledged so they are not sent again);
- ``451`` when storing failed for any passing reason: the sending MTA keeps the mail and
  retries, so nothing is lost;
- ``554`` for what is not a mail at all (no From), ``552`` over HELIOGRAPH_MAX_EMAIL_BYTES
  (aiosmtpd's ``data_size_limit``, also announced as ``SIZE`` in EHLO).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import WebhookError, shutdown_hooks, startup_hooks
from channels.email.settings import EmailSettings

log = logging.getLogger(__name__)


class InboxHandler:
    """aiosmtpd handler: every message, whatever its recipients, goes to ``receive``."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        from channels.email import receive

        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", "surrogateescape")
        mail_from = envelope.mail_from
        envelope_from = "" if mail_from in ("", "<>") else mail_from
        try:
            outcome = await receive(raw, envelope_from)
        except WebhookError as exc:
            return f"554 5.6.0 {exc}"
        except Exception:  # any failure to store means: send it again later
            log.exception("could not store mail from %s; answered 451", mail_from)
            return "451 4.3.0 Could not store the message now; please try again later"
        if outcome.dropped:
            return f"250 2.0.0 Accepted and discarded ({outcome.dropped})"
        return f"250 2.0.0 Stored as {outcome.message_id}"


_server: asyncio.AbstractServer | None = None


async def start_listener(host: str, port: int, limit: int) -> asyncio.AbstractServer:
    from channels.email import our_domain

    loop = asyncio.get_running_loop()
    handler = InboxHandler()

    def protocol() -> Any:
        return SMTP(
            handler,
            data_size_limit=limit,
            enable_SMTPUTF8=True,
            hostname=our_domain(EmailSettings.get()),  # not socket.getfqdn(): it may block on DNS
            ident="Heliograph ESMTP",
            loop=loop,
        )

    return await loop.create_server(protocol, host=host, port=port)


async def _on_startup() -> None:
    global _server
    settings = EmailSettings.get()
    if settings.smtp_listen_port <= 0 or _server is not None:
        return
    try:
        _server = await start_listener(
            settings.smtp_listen_host, settings.smtp_listen_port, settings.max_email_bytes
        )
    except OSError as exc:
        # Configured but impossible: fail loudly rather than silently take no mail.
        raise RuntimeError(
            f"cannot listen for SMTP on {settings.smtp_listen_host}:"
            f"{settings.smtp_listen_port}: {exc}"
        ) from exc
    log.info("SMTP listener on %s:%s", settings.smtp_listen_host, settings.smtp_listen_port)


async def _on_shutdown() -> None:
    global _server
    if _server is None:
        return
    server, _server = _server, None
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 5)
    except TimeoutError:
        log.warning("SMTP sessions still open at shutdown; their senders will retry")


startup_hooks.append(_on_startup)
shutdown_hooks.append(_on_shutdown)
