"""Twilio's webhooks: incoming SMS / WhatsApp messages and outbound status callbacks.

Both are checked against ``X-Twilio-Signature`` for the public URL first (403), then read
as forms (400); messages are stored, with any STOP / START consent change, before Twilio
hears 200.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from channels import messaging, twilio
from channels.base import WebhookRequest
from inbox.ingest import InboundMessage
from web.deps import RawBody

router = APIRouter(prefix="/webhooks/twilio", tags=["channels"])


def _hook(request: Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        request.method, str(request.url), request.headers, body, dict(request.query_params)
    )


@router.post("/messages", summary="Incoming SMS and WhatsApp messages (X-Twilio-Signature)")
async def messages(request: Request, body: RawBody) -> Response:
    hook = _hook(request, body)
    await twilio.channel.verify(hook)
    items = [i for i in twilio.channel.parse(hook) if isinstance(i, InboundMessage)]
    await messaging.store(items, twilio.consent_of)
    return Response(twilio.EMPTY_TWIML, media_type="application/xml")


@router.post("/status", summary="Delivery status callbacks (X-Twilio-Signature)")
async def status(request: Request, body: RawBody) -> dict[str, object]:
    hook = _hook(request, body)
    await twilio.channel.verify(hook)
    update = twilio.channel.parse_status(hook)
    outcome = await messaging.apply_statuses([update] if update else [])
    return {"applied": outcome.applied, "unknown": outcome.unknown}
