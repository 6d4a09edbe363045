"""``POST /api/v1/inbound``: the generic API channel's webhook."""

from __future__ import annotations

from fastapi import APIRouter, Request

from bots.base import WebhookRequest, get_adapter
from heliograph.db import get_db
from inbox.ingest import accept
from web.deps import RawBody

router = APIRouter(tags=["channels"])


@router.post("/api/v1/inbound", summary="Inject a customer message (HMAC-signed)")
async def inbound(request: Request, body: RawBody) -> dict[str, object]:
    adapter = get_adapter("api")
    hook = WebhookRequest("POST", str(request.url), request.headers, body)
    await adapter.verify(hook)  # 403 before anything is parsed or stored
    (message,) = adapter.parse(hook)
    result = await accept(get_db(), message)
    return {
        "message_id": message.provider_message_id,
        "conversation_id": result.conversation_id,
        "customer_id": result.customer_id,
        "duplicate": result.duplicate,
    }
