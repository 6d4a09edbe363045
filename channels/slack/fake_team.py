"""The fake Slack's team side: workspace members, their messages, button presses.

``POST /_sandbox/slack/users`` adds a member (``users.info`` and ``users.lookupByEmail``
answer with their email); ``POST /_sandbox/slack/agent`` plays a member writing, editing or
deleting a message (a signed Events API event; thread replies carry ``thread_ts`` and
``parent_user_id``); ``POST /_sandbox/slack/click`` plays a button press or a menu choice
(a signed ``block_actions`` to the interactivity URL). With ``relay`` the signed request
comes back to the caller instead, for a test that runs Heliograph in its own process.
``GET /_sandbox/slack/messages/{channel}`` shows a channel as the fake keeps it;
``POST /_sandbox/slack/lose-next`` carries out the next call of a method and answers 500.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from channels.slack.fake import (
    APP_ID,
    BOT_USER_ID,
    TEAM_ID,
    channel_store,
    deliver_event,
    event_envelope,
    find_message,
    lose_next_methods,
    member_profile,
    new_ts,
    rich_text,
    send_signed,
    workspace_members,
)

router = APIRouter(tags=["slack fake"])


class LoseNextIn(BaseModel):
    method: str = "chat.postMessage"


@router.post("/_sandbox/slack/lose-next", include_in_schema=False)
async def lose_next(body: LoseNextIn) -> dict[str, Any]:
    """Carry out the next call of ``method``, then answer 500 (the answer is "lost")."""
    lose_next_methods.add(body.method)
    return {"method": body.method, "lose_next": True}


class UserIn(BaseModel):
    id: str = Field(pattern=r"^[UW][A-Z0-9]{2,}$")
    real_name: str
    email: str = ""
    tz: str = "Europe/London"


@router.post("/_sandbox/slack/users", include_in_schema=False)
async def add_user(body: UserIn) -> dict[str, Any]:
    """A member of the workspace (an agent), known to users.info and users.lookupByEmail."""
    workspace_members[body.id] = body.model_dump()
    return {"user": member_profile(body.id)}


@router.get("/_sandbox/slack/messages/{channel}", include_in_schema=False)
async def channel_messages(channel: str) -> list[dict[str, Any]]:
    """Everything in a channel as the fake keeps it (threads included), oldest first."""
    return [{**m, "channel": channel} for m in channel_store.get(channel, [])]


class AgentIn(BaseModel):
    """A workspace member writes (``message``), edits or deletes one of their messages."""

    user: str = Field(pattern=r"^[UW][A-Z0-9]{2,}$")
    channel: str = Field(pattern=r"^[CDG][A-Z0-9]{2,}$")
    text: str = ""
    thread_ts: str | None = None
    action: str = Field(default="message", pattern="^(message|edit|delete)$")
    ts: str | None = Field(default=None, description="The message edited or deleted.")
    retry: int = Field(default=0, ge=0, le=3, description="Send the same event this often more.")
    relay: bool = False


def _member_event(body: AgentIn) -> tuple[dict[str, Any], str]:
    kind = "im" if body.channel.startswith("D") else "channel"
    base = {"type": "message", "channel": body.channel, "channel_type": kind}
    now = new_ts()
    if body.action == "message":
        ts = now
        message = {
            "client_msg_id": str(uuid.uuid4()),
            "type": "message",
            "text": body.text,
            "user": body.user,
            "ts": ts,
            "team": TEAM_ID,
            "blocks": rich_text(body.text),
        }
        if body.thread_ts:
            parent = find_message(body.channel, body.thread_ts)
            message["thread_ts"] = body.thread_ts
            message["parent_user_id"] = (parent or {}).get("user", BOT_USER_ID)
        channel_store.setdefault(body.channel, []).append(message)
        return {**base, **message, "event_ts": ts}, ts
    ts = body.ts or ""
    kept = find_message(body.channel, ts) or {"type": "message", "user": body.user, "ts": ts}
    if body.action == "edit":
        previous = dict(kept)
        kept.update(text=body.text, edited={"user": body.user, "ts": now})
        event = {**base, "subtype": "message_changed", "hidden": True, "message": dict(kept)}
        return {**event, "previous_message": previous, "ts": now, "event_ts": now}, ts
    if kept in channel_store.get(body.channel, []):
        channel_store[body.channel].remove(kept)
    event = {**base, "subtype": "message_deleted", "hidden": True, "deleted_ts": ts}
    return {**event, "previous_message": kept, "ts": now, "event_ts": now}, ts


@router.post("/_sandbox/slack/agent", include_in_schema=False)
async def member_writes(body: AgentIn) -> JSONResponse:
    """A member's message event, signed; ``retry`` sends the same event again as Slack
    does when it missed the first answer (``X-Slack-Retry-Num`` aside)."""
    event, ts = _member_event(body)
    envelope = event_envelope(event)
    answer = await deliver_event(envelope, {"channel": body.channel, "ts": ts}, body.relay)
    for _ in range(body.retry):
        answer = await deliver_event(envelope, {"channel": body.channel, "ts": ts}, body.relay)
    return answer


class ClickIn(BaseModel):
    """A member presses a button (or picks an option) on a message the app posted."""

    user: str = Field(pattern=r"^[UW][A-Z0-9]{2,}$")
    channel: str
    ts: str = Field(description="The message with the button.")
    action_id: str
    value: str
    relay: bool = False


@router.post("/_sandbox/slack/click", include_in_schema=False)
async def click(body: ClickIn, request: Request) -> JSONResponse:
    """A signed ``block_actions`` interaction, as Slack posts it to the interactivity URL."""
    message = find_message(body.channel, body.ts)
    if message is None:
        return JSONResponse({"error": "no such message in the fake"}, status_code=404)
    action: dict[str, Any] = {
        "action_id": body.action_id,
        "block_id": "hg",
        "type": "button",
        "action_ts": new_ts(),
        "value": body.value,
    }
    if body.action_id.endswith("snooze"):
        action = {**action, "type": "static_select", "selected_option": {"value": body.value}}
        del action["value"]
    payload = {
        "type": "block_actions",
        "user": {"id": body.user, "username": body.user.lower(), "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "sandboxverificationtoken",
        "container": {
            "type": "message",
            "message_ts": body.ts,
            "channel_id": body.channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:10]}",
        "team": {"id": TEAM_ID, "domain": "heliograph-sandbox"},
        "channel": {"id": body.channel, "name": body.channel.lower()},
        "message": message,
        "response_url": f"{request.base_url}slack/responses/{uuid.uuid4().hex[:12]}",
        "actions": [action],
    }
    form = urlencode({"payload": json.dumps(payload)}).encode()
    return await send_signed(
        "/webhooks/slack/interactions", form, "application/x-www-form-urlencoded", body.relay
    )
