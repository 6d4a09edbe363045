"""``POST /webhooks/email``: one raw RFC 5322 message, for an MTA pipe or an inbound-parse
service (e.g. Postfix ``pipe`` + curl), with ``Authorization: Bearer <secret>``.

Checked in this order, each before any work the next needs: the secret (403, without
reading the body), the size (413 over HELIOGRAPH_MAX_EMAIL_BYTES, its own limit: mail with
attachments is larger than any JSON webhook), the mail itself (400). 200 means committed.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from channels import email as email_channel
from channels.base import WebhookRequest
from heliograph.settings import get_settings

router = APIRouter(tags=["channels"])


async def _read_mail(request: Request, limit: int) -> bytes:
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, f"the mail is over the limit of {limit} bytes"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/email", summary="Receive one raw email (Bearer secret)")
async def email_webhook(request: Request) -> dict[str, object]:
    headers_only = WebhookRequest(request.method, str(request.url), request.headers, b"")
    await email_channel.channel.verify(headers_only)
    raw = await _read_mail(request, get_settings().max_email_bytes)
    outcome = await email_channel.receive(raw)
    result = outcome.accepted
    return {
        "message_id": outcome.message_id,
        "stored": int(result is not None and not result.duplicate),
        "duplicate": bool(result and result.duplicate),
        "dropped": outcome.dropped,
        "conversation_id": result.conversation_id if result else None,
        "customer_id": result.customer_id if result else None,
    }
