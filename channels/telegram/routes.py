"""``POST /webhooks/telegram``: Telegram's updates (secret-token checked in the adapter)."""

from __future__ import annotations

from fastapi import APIRouter

from channels.base import Hook, InvalidFields
from channels.telegram import channel, divert
from inbox import intake

router = APIRouter(tags=["channels"])


@router.post("/webhooks/telegram", summary="Telegram Bot API webhook (setWebhook secret_token)")
async def telegram_webhook(hook: Hook) -> dict[str, int]:
    # Everything is committed when intake.receive returns; only then may Telegram hear 200.
    # The body carries no "method" key: Telegram would run one found in a webhook answer.
    await channel.verify(hook)  # once, before anything is parsed or stored
    data = hook.json()
    if not isinstance(data, dict):
        raise InvalidFields("the body must be a JSON object (a Telegram Update)")
    # A team member's chat (or a /link or exec command): handled and committed by the
    # agents' surface, never stored as a customer's message.
    if await divert(data):
        return {"stored": 0, "duplicates": 0, "edited": 0, "ignored": 0, "team": 1}
    items = channel.parse_update(data)
    outcome = await intake.receive(items, ignored=int(not items))
    return {
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "edited": len(outcome.edited),
        "ignored": outcome.ignored,
    }
