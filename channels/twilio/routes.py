"""Twilio's webhooks: incoming SMS / WhatsApp messages and outbound status callbacks.

Both are checked against ``X-Twilio-Signature`` for the public URL first (403), then read
as forms (400); messages are stored, with any STOP / START consent change, before Twilio
hears 200.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from channels.base import Hook
from channels.twilio import EMPTY_TWIML, channel
from inbox import intake

router = APIRouter(prefix="/webhooks/twilio", tags=["channels"])


@router.post("/messages", summary="Incoming SMS and WhatsApp messages (X-Twilio-Signature)")
async def messages(hook: Hook) -> Response:
    await channel.verify(hook)
    await intake.receive(channel.parse(hook))  # committed when it returns
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post("/status", summary="Delivery status callbacks (X-Twilio-Signature)")
async def status(hook: Hook) -> dict[str, object]:
    await channel.verify(hook)
    update = channel.parse_status(hook)
    outcome = await intake.receive([update] if update else [])
    return {"applied": outcome.statuses_applied, "unknown": outcome.unknown_statuses}
