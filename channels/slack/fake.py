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

Posted messages are kept per channel, with their blocks and metadata, and read back by
``conversations.history`` / ``conversations.replies`` (metadata only with
``include_all_metadata``, as Slack does); ``DELETE /_sandbox/slack`` forgets them. The
team's side (members, their messages and button presses) is ``channels.slack.fake_team``;
file uploads (``files.getUploadURLExternal``, the upload URL, ``files.completeUploadExternal``)
are ``channels.slack.fake_files``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from slack_sdk.signature import SignatureVerifier

from channels.slack.settings import SlackSettings
from heliograph.settings import get_settings
from sandbox.core import SAY_CHANNELS, read_params, state

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
lose_next_methods: set[str] = set()  # methods whose next call is carried out, then answered 500
channel_store: dict[str, list[dict[str, Any]]] = {}  # channel -> messages, oldest first
workspace_members: dict[str, dict[str, Any]] = {}  # workspace members added by tests
file_store: dict[str, dict[str, Any]] = {}  # file id -> an upload (channels.slack.fake_files)
#: The fake's own base URL during a Web API call (an upload URL points back at the fake).
request_base: ContextVar[str] = ContextVar("slack_fake_base", default="http://127.0.0.1/")
_ts = itertools.count(1)


def new_ts() -> str:
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
    expected = SlackSettings.get().slack_bot_token
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
    request_base.set(str(request.base_url))
    answer = METHODS.get(method)
    if answer is None:
        return _error("unknown_method")
    result = answer(params)
    if result.get("ok"):
        state.record("slack", method, params)
        if method in lose_next_methods:  # done, but the caller never hears so
            lose_next_methods.discard(method)
            return JSONResponse({"ok": False, "error": "internal_error"}, status_code=500)
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


def channel_problem(channel: str) -> str | None:
    if not _CHANNEL_ID.match(channel):
        return "channel_not_found"
    state_ = _channel_states.get(channel)
    return CHANNEL_ERRORS.get(state_) if state_ else None


def json_param(value: Any) -> Any:
    """slack_sdk sends objects (blocks, metadata) as JSON, or as JSON text in a form."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _post_message(p: dict[str, Any]) -> dict[str, Any]:
    channel, text = str(p.get("channel") or ""), p.get("text")
    if not text and not p.get("blocks") and not p.get("attachments"):
        return {"ok": False, "error": "no_text"}
    problem = channel_problem(channel)
    if problem:
        return {"ok": False, "error": problem}
    if len(str(text or "")) > 40_000:
        return {"ok": False, "error": "msg_too_long"}
    ts, thread_ts = new_ts(), p.get("thread_ts") or None
    message = _bot_message(channel, str(text or ""), ts, thread_ts)
    for name in ("blocks", "metadata"):
        if p.get(name):
            message[name] = json_param(p[name])
    channel_store.setdefault(channel, []).append(message)
    return {"ok": True, "channel": channel, "ts": ts, "message": message}


def _post_ephemeral(p: dict[str, Any]) -> dict[str, Any]:
    """Shown to one user only, and never kept in the channel."""
    channel, user = str(p.get("channel") or ""), str(p.get("user") or "")
    problem = channel_problem(channel)
    if problem or not _USER_ID.match(user):
        return {"ok": False, "error": problem or "user_not_in_channel"}
    if not p.get("text") and not p.get("blocks"):
        return {"ok": False, "error": "no_text"}
    return {"ok": True, "message_ts": new_ts()}


def find_message(channel: str, ts: str) -> dict[str, Any] | None:
    return next((m for m in channel_store.get(channel, []) if m["ts"] == ts), None)


def _update(p: dict[str, Any]) -> dict[str, Any]:
    channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
    problem = channel_problem(channel)
    if problem or not ts:
        return {"ok": False, "error": problem or "message_not_found"}
    text = str(p.get("text") or "")
    message = find_message(channel, ts)
    if message is None:
        # Not posted through this fake (an older test's message): answered as before.
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": text,
            "message": _bot_message(channel, text, ts, None),
        }
    message["text"] = text
    if p.get("blocks"):
        message["blocks"] = json_param(p["blocks"])
    message["edited"] = {"user": BOT_USER_ID, "ts": new_ts()}
    return {"ok": True, "channel": channel, "ts": ts, "text": text, "message": message}


def _shown(message: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    """Slack leaves metadata out unless asked with ``include_all_metadata``."""
    if str(p.get("include_all_metadata", "")).lower() in ("1", "true"):
        return message
    return {k: v for k, v in message.items() if k != "metadata"}


def _history(p: dict[str, Any]) -> dict[str, Any]:
    """Top-level messages, newest first, from ``oldest`` on (no paging: a test's channel
    holds far fewer than ``limit``)."""
    channel = str(p.get("channel") or "")
    problem = channel_problem(channel)
    if problem:
        return {"ok": False, "error": problem}
    oldest = float(p.get("oldest") or 0)
    top = [
        m
        for m in channel_store.get(channel, [])
        if m.get("thread_ts") in (None, m["ts"]) and float(m["ts"]) >= oldest
    ]
    limit = int(p.get("limit") or 100)
    shown = [_shown(m, p) for m in reversed(top)][:limit]
    return {"ok": True, "messages": shown, "has_more": len(top) > limit}


def _replies(p: dict[str, Any]) -> dict[str, Any]:
    channel, ts = str(p.get("channel") or ""), str(p.get("ts") or "")
    problem = channel_problem(channel)
    if problem:
        return {"ok": False, "error": problem}
    thread = [
        m for m in channel_store.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts
    ]
    if not thread:
        return {"ok": False, "error": "thread_not_found"}
    return {"ok": True, "messages": [_shown(m, p) for m in thread], "has_more": False}


def member_profile(user: str) -> dict[str, Any]:
    known = workspace_members.get(user)
    name = known["real_name"] if known else f"Sandbox customer {user}"
    profile: dict[str, Any] = {"real_name": name, "display_name": name, "team": TEAM_ID}
    if known and known.get("email"):
        profile["email"] = known["email"]
    return {
        "id": user,
        "team_id": TEAM_ID,
        "name": user.lower(),
        "deleted": False,
        "real_name": name,
        "tz": (known or {}).get("tz") or "Europe/London",
        "tz_label": "Greenwich Mean Time",
        "tz_offset": 0,
        "profile": profile,
        "is_bot": False,
        "is_app_user": False,
    }


def _users_info(p: dict[str, Any]) -> dict[str, Any]:
    user = str(p.get("user") or "")
    if not _USER_ID.match(user):
        return {"ok": False, "error": "user_not_found"}
    return {"ok": True, "user": member_profile(user)}


def _lookup_by_email(p: dict[str, Any]) -> dict[str, Any]:
    email = str(p.get("email") or "").lower()
    found = next(
        (u for u, v in workspace_members.items() if v.get("email", "").lower() == email), None
    )
    if found is None:
        return {"ok": False, "error": "users_not_found"}
    return {"ok": True, "user": member_profile(found)}


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


#: Web API methods by name; channels.slack.fake_files adds the file-upload ones.
METHODS: dict[str, Any] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "users.info": _users_info,
    "users.lookupByEmail": _lookup_by_email,
    "conversations.history": _history,
    "conversations.replies": _replies,
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


@router.delete("/_sandbox/slack", include_in_schema=False)
async def forget() -> dict[str, int]:
    """Forget messages, members and planned failures (between tests)."""
    count = sum(len(m) for m in channel_store.values())
    for kept in (channel_store, workspace_members, _fail_next, _channel_states, file_store):
        kept.clear()
    lose_next_methods.clear()
    return {"forgotten": count}


def event_envelope(event: dict[str, Any], *, shared: bool = False) -> dict[str, Any]:
    ts = str(event.get("event_ts") or event.get("ts") or new_ts())
    return {
        "token": "sandboxverificationtoken",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
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
        "is_ext_shared_channel": shared,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def _signed_headers(payload: bytes, content_type: str) -> dict[str, str]:
    """Slack's v0 signature of the body, the way Slack calls a request URL."""
    timestamp = str(int(time.time()))
    secret = SlackSettings.get().slack_signing_secret or "-"
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=payload)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }


async def send_signed(path: str, payload: bytes, content_type: str, relay: bool) -> JSONResponse:
    """POST the signed request to Heliograph; with ``relay``, hand it to the caller instead
    (a test that runs Heliograph in its own process forwards it)."""
    headers = _signed_headers(payload, content_type)
    if relay:
        return JSONResponse({"path": path, "body": payload.decode(), "headers": headers})
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{get_settings().public_url}{path}", content=payload, headers=headers
        )
    answer: dict[str, Any] = {"status": response.status_code}
    if response.status_code != 200:
        answer["error"] = response.text[:500]
    return JSONResponse(answer, status_code=response.status_code)


async def deliver_event(
    envelope: dict[str, Any], answer: dict[str, Any], relay: bool = False
) -> JSONResponse:
    payload = json.dumps(envelope).encode()
    sent = await send_signed("/webhooks/slack/events", payload, "application/json", relay)
    body = json.loads(bytes(sent.body))
    return JSONResponse(
        {"event_id": envelope["event_id"], **answer, **body}, status_code=sent.status_code
    )


def rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


def _user_id(sender: str) -> str:
    return sender if _USER_ID.match(sender) else f"U{sender.upper()}"


class SayIn(BaseModel):
    text: str
    sender: str = Field(default="1001", alias="from")


@router.post("/_sandbox/say/slack", include_in_schema=False)
async def say(body: SayIn) -> JSONResponse:
    """Act as a Slack user writing a DM to the app: a signed ``message.im`` event."""
    user = _user_id(body.sender)
    channel, ts = _dm_channel(user), new_ts()
    event = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "message",
        "text": body.text,
        "user": user,
        "ts": ts,
        "team": TEAM_ID,
        "blocks": rich_text(body.text),
        "channel": channel,
        "event_ts": ts,
        "channel_type": "im",
    }
    return await deliver_event(event_envelope(event), {"channel": channel, "ts": ts})
