"""Meta's WhatsApp Cloud API webhook: the GET subscription handshake and signed POSTs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from channels import messaging, whatsapp_cloud
from channels.base import WebhookRequest
from inbox.ingest import InboundMessage
from web.deps import RawBody

router = APIRouter(prefix="/webhooks/whatsapp", tags=["channels"])


@router.get("", summary="Meta's verification request (hub.verify_token)")
async def subscribe(request: Request) -> PlainTextResponse:
    challenge = whatsapp_cloud.channel.verify_subscription(request.query_params)
    return PlainTextResponse(challenge)


@router.post("", summary="Messages and statuses (X-Hub-Signature-256)")
async def notification(request: Request, body: RawBody) -> dict[str, object]:
    hook = WebhookRequest(request.method, str(request.url), request.headers, body)
    await whatsapp_cloud.channel.verify(hook)
    items = [i for i in whatsapp_cloud.channel.parse(hook) if isinstance(i, InboundMessage)]
    updates = whatsapp_cloud.channel.status_updates(hook)
    stored = await messaging.store(items)
    outcome = await messaging.apply_statuses(updates)
    return {
        "stored": sum(not s.result.duplicate for s in stored),
        "duplicates": sum(s.result.duplicate for s in stored),
        "statuses": outcome.applied,
        "unknown_statuses": outcome.unknown,
    }
