"""A fake Slack: the Web API methods Heliograph calls, and customers writing to the app.

``AsyncWebClient(base_url=f"{sandbox}/slack/api/")`` reaches ``/slack/api/{method}``
(JSON, form or query parameters; ``Authorization: Bearer xoxb-...``). Answers are shaped
like Slack's: HTTP 200 with ``{"ok": false, "error": ...}`` for API errors, and HTTP 429
with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}`` while a 429 failure plan
is in force (``POST /_sandbox/fail``).

Channels exist unless told otherwise: ``POST /_sandbox/slack/channels/{id}`` with
``{"state": "deleted" | "archived" | "not_in_channel"}`` makes posting there fail the way
Slack does; ``POST /_sandbox/slack/fail-next`` fails one call after N good ones (a 5xx
half-way through a long reply). ``POST /_sandbox/say/slack`` plays a customer writing a
DM to the app: a signed Events API ``message.im`` event to Heliograph.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from slack_sdk.signature import SignatureVerifier

from bots.sandbox.core import SAY_CHANNELS, read_params, state
from heliograph.settings import get_settings

router = APIRouter(tags=["slack fake"])
SAY_CHANNELS.append("slack")

TEAM_ID, APP_ID = "T0SANDBOX1", "A0HELIOGRA"
BOT_USER_ID, BOT_ID = "U0HELIOBOT", "B0HELIOBOT"
CHANNEL_ERRORS = {
    "deleted": "channel_not_found",
    "archived": "is_archived",
    "not_in_channel": "not_in_channel",
}
_CHANNEL_ID = re.compile(r"^[CDG][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_channel_states: dict[str, str] = {}
_fail_next: dict[str, int] = {}  # method -> good calls left before one 500
_ts = itertools.count(1)


def _new_ts() -> str:
    """Slack message ids: seconds '.' six digits, unique and increasing."""
    return f"{int(time.time())}.{next(_ts) % 1_000_000:06d}"


def _dm_channel(user: str) -> str:
    return "D" + user[1:]


def _error(error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error, **extra})


def _authed(request: Request) -> JSONResponse | None:
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not token:
        return _error("not_authed")
    expected = get_settings().slack_bot_token
    if expected and token != expected:
        return _error("invalid_auth")
    return None


@router.api_route("/slack/api/{method}", methods=["GET", "POST"])
async def web_api(method: str, request: Request) -> JSONResponse:
    failing = await state.maybe_fail("slack")
    if failing is not None:
        return failing  # type: ignore[return-value]
    refused = _authed(request)
    if refused is not None:
        return refused
    if method in _fail_next:
        if _fail_next[method] <= 0:
            del _fail_next[method]
            return JSONResponse({"ok": False, "error": "internal_error"}, status_code=500)
        _fail_next[method] -= 1
    # slack_sdk sends GET methods (users.info) with their arguments in the query string.
    params = {**dict(request.query_params), **await read_params(request)}
    answer = _METHODS.get(method)
    if answer is None:
        return _error("unknown_method")
    result = answer(params)
    if result.get("ok"):
        state.record("slack", method, params)
    return JSONResponse(result)


def _auth_test(_: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "url": "https://heliograph-sandbox.slack.com/",
        "team": "Heliograph Sandbox",
        "user": "heliograph",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def _bot_message(channel: str, text: str, ts: str, thread_ts: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": text,
        "team": TEAM_ID,
        "ts": ts,
        "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": "Heliograph", "team_id": TEAM_ID},
    }
    if thread_ts:
        message["thread_ts"] = thread_ts
    return message


def _channel_problem(channel: str) -> str | None:
    if not _CHANNEL_ID.match(channel):
        return "channel_not_found"
    state_ = _channel_states.get(channel)
    return CHANNEL_ERRORS.get(state_) if state_ else None


def _post_message(p: dict[str, Any]) -> dict[str, Any]:
    channel, text = str(p.get("channel") or ""), p.get("text")
    if not text and not p.get("blocks") and not p.get("attachments"):
        return {"ok": False, "error": "no_text"}
    problem = _channel_problem(channel)
    if problem:
        return {"ok": False, "error": problem}
    if len(str(text or "")) > 40_000:
        return {"ok": False, "error": "msg_too_long"}
    ts, thread_ts = _new_ts(), p.get("thread_ts") or None
    return {
        "ok": True,
        "channel": channel,
        "ts": ts,
        "message": _bot_message(channel, str(text or ""), ts, thread_ts),
    }


def _update(p: dict[str, Any]) -> dict[str, Any]:
    channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
    problem = _channel_problem(channel)
    if problem or not ts:
        return {"ok": False, "error": problem or "message_not_found"}
    text = str(p.get("text") or "")
    return {
        "ok": True,
        "channel": channel,
        "ts": ts,
        "text": text,
        "message": _bot_message(channel, text, ts, None),
    }


def _users_info(p: dict[str, Any]) -> dict[str, Any]:
    user = str(p.get("user") or "")
    if not _USER_ID.match(user):
        return {"ok": False, "error": "user_not_found"}
    name = f"Sandbox customer {user}"
    return {
        "ok": True,
        "user": {
            "id": user,
            "team_id": TEAM_ID,
            "name": user.lower(),
            "deleted": False,
            "real_name": name,
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {"real_name": name, "display_name": name, "team": TEAM_ID},
            "is_bot": False,
            "is_app_user": False,
        },
    }


def _conversations_open(p: dict[str, Any]) -> dict[str, Any]:
    users = [u for u in str(p.get("users") or "").split(",") if u]
    if len(users) != 1 or not _USER_ID.match(users[0]):
        return {"ok": False, "error": "user_not_found" if users else "users_list_not_supplied"}
    return {
        "ok": True,
        "no_op": True,
        "already_open": True,
        "channel": {"id": _dm_channel(users[0])},
    }


def _views_open(p: dict[str, Any]) -> dict[str, Any]:
    view = p.get("view")
    if isinstance(view, str):
        try:
            view = json.loads(view)
        except ValueError:
            view = None
    if not p.get("trigger_id"):
        return {"ok": False, "error": "invalid_trigger_id"}
    if not isinstance(view, dict) or not view.get("type"):
        return {"ok": False, "error": "invalid_arguments"}
    return {
        "ok": True,
        "view": {
            **view,
            "id": f"V{uuid.uuid4().hex[:10].upper()}",
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
        },
    }


_METHODS = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "users.info": _users_info,
    "conversations.open": _conversations_open,
    "views.open": _views_open,
}


class ChannelStateIn(BaseModel):
    state: str = Field(pattern="^(ok|deleted|archived|not_in_channel)$")


@router.post("/_sandbox/slack/channels/{channel}", include_in_schema=False)
async def set_channel_state(channel: str, body: ChannelStateIn) -> dict[str, str]:
    """Make a channel fail like a deleted / archived / left one (``ok`` restores it)."""
    if body.state == "ok":
        _channel_states.pop(channel, None)
    else:
        _channel_states[channel] = body.state
    return {"channel": channel, "state": body.state}


class FailNextIn(BaseModel):
    method: str = "chat.postMessage"
    after: int = Field(default=0, ge=0, le=1000)


@router.post("/_sandbox/slack/fail-next", include_in_schema=False)
async def fail_next(body: FailNextIn) -> dict[str, Any]:
    """After ``after`` good calls of ``method``, answer the next one with a 500 (once)."""
    _fail_next[body.method] = body.after
    return {"method": body.method, "after": body.after}


class SayIn(BaseModel):
    text: str
    sender: str = Field(default="1001", alias="from")


@router.post("/_sandbox/say/slack", include_in_schema=False)
async def say(body: SayIn) -> JSONResponse:
    """Act as a Slack user writing a DM to the app: a signed ``message.im`` event."""
    settings = get_settings()
    user = body.sender if _USER_ID.match(body.sender) else f"U{body.sender.upper()}"
    channel, ts = _dm_channel(user), _new_ts()
    event_id = f"Ev{uuid.uuid4().hex[:10].upper()}"
    payload = json.dumps(
        {
            "token": "sandboxverificationtoken",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": {
                "client_msg_id": str(uuid.uuid4()),
                "type": "message",
                "text": body.text,
                "user": user,
                "ts": ts,
                "team": TEAM_ID,
                "blocks": [
                    {
                        "type": "rich_text",
                        "block_id": uuid.uuid4().hex[:5],
                        "elements": [
                            {
                                "type": "rich_text_section",
                                "elements": [{"type": "text", "text": body.text}],
                            }
                        ],
                    }
                ],
                "channel": channel,
                "event_ts": ts,
                "channel_type": "im",
            },
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(float(ts)),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }
    ).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(settings.slack_signing_secret or "-").generate_signature(
        timestamp=timestamp, body=payload
    )
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{settings.public_url}/webhooks/slack/events",
            content=payload,
            headers={
                "Content-Type": "application/json",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature or "",
            },
        )
    answer: dict[str, Any] = {"event_id": event_id, "channel": channel, "ts": ts}
    if response.status_code != 200:
        answer["error"] = response.text[:500]
    return JSONResponse(answer, status_code=response.status_code)
