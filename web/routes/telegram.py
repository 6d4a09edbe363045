"""``POST /webhooks/telegram``: Telegram's updates (secret-token checked in the adapter)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from channels import telegram
from channels.base import InvalidFields, WebhookRequest
from web.deps import RawBody
from web.routes.webhooks import handle_webhook

router = APIRouter(tags=["channels"])


@router.post("/webhooks/telegram", summary="Telegram Bot API webhook (setWebhook secret_token)")
async def telegram_webhook(request: Request, body: RawBody) -> dict[str, int]:
    # Everything is committed when handle_webhook returns; only then may Telegram hear 200.
    # The body carries no "method" key: Telegram would run one found in a webhook answer.
    hook = WebhookRequest(request.method, str(request.url), request.headers, body)
    await telegram.channel.verify(hook)  # before anything is parsed or stored
    data = hook.json()
    if not isinstance(data, dict):
        raise InvalidFields("the body must be a JSON object (a Telegram Update)")
    # A team member's chat (or a /link or exec command): handled and committed by the
    # agents' surface, never stored as a customer's message.
    if await telegram.divert(data):
        return {"stored": 0, "duplicates": 0, "edited": 0, "ignored": 0, "team": 1}
    outcome = await handle_webhook("telegram", request, body)
    return {
        "stored": sum(not r.duplicate for r in outcome.accepted),
        "duplicates": sum(r.duplicate for r in outcome.accepted),
        "edited": len(outcome.edited),
        "ignored": outcome.ignored,
    }
