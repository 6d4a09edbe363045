"""``POST /webhooks/telegram``: Telegram's updates (secret-token checked in the adapter)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from web.deps import RawBody
from web.routes.webhooks import handle_webhook

router = APIRouter(tags=["channels"])


@router.post("/webhooks/telegram", summary="Telegram Bot API webhook (setWebhook secret_token)")
async def telegram_webhook(request: Request, body: RawBody) -> dict[str, int]:
    # Everything is committed when handle_webhook returns; only then may Telegram hear 200.
    # The body carries no "method" key: Telegram would run one found in a webhook answer.
    outcome = await handle_webhook("telegram", request, body)
    return {
        "stored": sum(not r.duplicate for r in outcome.accepted),
        "duplicates": sum(r.duplicate for r in outcome.accepted),
        "edited": len(outcome.edited),
        "ignored": outcome.ignored,
    }
