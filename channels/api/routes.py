"""``POST /api/v1/inbound``: the generic API channel's webhook."""

from __future__ import annotations

from fastapi import APIRouter

from channels.api import channel
from channels.base import Hook
from inbox import intake

router = APIRouter(tags=["channels"])


@router.post("/api/v1/inbound", summary="Inject a customer message (HMAC-signed)")
async def inbound(hook: Hook) -> dict[str, object]:
    await channel.verify(hook)  # before anything is parsed or stored
    outcome = await intake.receive(channel.parse(hook))  # committed when it returns
    (result,) = outcome.accepted
    return {
        "message_id": result.provider_message_id,
        "conversation_id": result.conversation_id,
        "customer_id": result.customer_id,
        "duplicate": result.duplicate,
    }
