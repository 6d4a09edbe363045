"""``POST /api/v1/inbound``: the generic API channel's webhook."""

from __future__ import annotations

from fastapi import APIRouter, Request

from web.deps import RawBody
from web.routes.webhooks import handle_webhook

router = APIRouter(tags=["channels"])


@router.post("/api/v1/inbound", summary="Inject a customer message (HMAC-signed)")
async def inbound(request: Request, body: RawBody) -> dict[str, object]:
    outcome = await handle_webhook("api", request, body)
    (result,) = outcome.accepted
    return {
        "message_id": result.provider_message_id,
        "conversation_id": result.conversation_id,
        "customer_id": result.customer_id,
        "duplicate": result.duplicate,
    }
