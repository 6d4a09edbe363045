"""Meta's WhatsApp Cloud API webhook: the GET subscription handshake and signed POSTs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from channels.base import Hook
from channels.whatsapp_cloud import channel
from inbox import intake

router = APIRouter(prefix="/webhooks/whatsapp", tags=["channels"])


@router.get("", summary="Meta's verification request (hub.verify_token)")
async def subscribe(request: Request) -> PlainTextResponse:
    challenge = channel.verify_subscription(request.query_params)
    return PlainTextResponse(challenge)


@router.post("", summary="Messages and statuses (X-Hub-Signature-256)")
async def notification(hook: Hook) -> dict[str, object]:
    await channel.verify(hook)
    outcome = await intake.receive(channel.parse(hook))  # committed when it returns
    return {
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "statuses": outcome.statuses_applied,
        "unknown_statuses": outcome.unknown_statuses,
    }
