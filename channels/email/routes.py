"""``POST /webhooks/email``: one raw RFC 5322 message, for an MTA pipe or an inbound-parse
service (e.g. Postfix ``pipe`` + curl), with ``Authorization: Bearer <secret>``.

Checked in this order, each before any work the next needs: the secret (403, without
reading the body), the size (413 over HELIOGRAPH_MAX_EMAIL_BYTES, its own limit: mail with
attachments is larger than any JSON webhook), the mail itself (400). 200 means committed.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from channels.base import WebhookRequest, read_body
from channels.email import channel, receive
from channels.email.settings import EmailSettings

router = APIRouter(tags=["channels"])


@router.post("/webhooks/email", summary="Receive one raw email (Bearer secret)")
async def email_webhook(request: Request) -> dict[str, object]:
    await channel.verify(WebhookRequest.of(request))  # the headers suffice
    raw = await read_body(request, EmailSettings.get().max_email_bytes, "the mail")
    outcome = await receive(raw)  # committed (or deliberately dropped) when it returns
    result = outcome.accepted
    return {
        "message_id": outcome.message_id,
        "stored": int(result is not None and not result.duplicate),
        "duplicate": bool(result and result.duplicate),
        "dropped": outcome.dropped,
        "conversation_id": result.conversation_id if result else None,
        "customer_id": result.customer_id if result else None,
    }
