"""A fake Telegram Bot API (https://core.telegram.org/bots/api) under ``/telegram``.

aiogram's ``Bot`` pointed at ``{sandbox}/telegram`` posts forms to
``/telegram/bot{token}/{method}`` and downloads files from ``/telegram/file/bot{token}/{path}``;
answers have the real shape: ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code", "description", "parameters"?}``. ``GET /_sandbox/calls`` lists the calls the
fake accepted; failed ones are not recorded (so a test counts what really "went out").

Acting as a customer (or a team member in their chat with the bot): ``POST
/_sandbox/say/telegram`` ``{"text", "from", "voice"?, "edit"?, "reply_to"?, "deliver"?}``
builds an Update as Telegram would and delivers it like Telegram does: to the webhook set
with ``setWebhook`` (with its secret token), else to ``{HELIOGRAPH_PUBLIC_URL}/webhooks/telegram``;
after ``deleteWebhook`` (or with no public URL) it waits for ``getUpdates`` instead.
``reply_to`` names a message_id in that chat: the update carries it as ``reply_to_message``,
as Telegram's reply-to does; ``deliver: false`` only answers the Update (a test posts it).
``GET /_sandbox/telegram/chats/{chat_id}`` lists what the bot sent to a chat, with each
message_id (a ``sendMessage`` with ``reply_parameters`` nests the replied-to message).

Test controls under ``/_sandbox/telegram``: ``block`` a chat (sendMessage then answers 403
"Forbidden: bot was blocked by the user"), ``script`` the next answers of a method
(``"ok"``, ``"500"``, ``"429:N"``, ``"403"``), register ``files``, and reset.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from channels.telegram.settings import TelegramSettings
from heliograph.settings import get_settings
from sandbox.core import SAY_CHANNELS, read_params, state
from sandbox.samples import silent_voice_note

router = APIRouter(tags=["telegram"])
SAY_CHANNELS.append("telegram")

BOT_USER = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "Heliograph Sandbox",
    "username": "heliograph_sandbox_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # setWebhook's documented alphabet
MAX_TEXT = 4096


@dataclass
class StoredFile:
    file_id: str
    unique_id: str
    path: str
    data: bytes
    content_type: str


@dataclass
class TelegramFake:
    webhook_url: str | None = None
    webhook_secret: str | None = None
    polling: bool = False  # deleteWebhook was called: updates wait for getUpdates
    pending: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    files: dict[str, StoredFile] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    scripts: dict[str, list[str]] = field(default_factory=dict)
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    # What the bot sent to each chat and what each user said there, by message_id: what a
    # reply (reply_to_message) can point at, and what a test reads back.
    sent: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    said: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    epoch: int = 0  # bumped by a reset, which ends every waiting getUpdates


fake = TelegramFake()
# Kept across resets: a message id that came back would be taken for a replay.
_update_ids = itertools.count(10000)
_message_ids: dict[int, itertools.count[int]] = {}
_file_seq = itertools.count(1)


def _next_message_id(chat_id: int) -> int:
    return next(_message_ids.setdefault(chat_id, itertools.count(100)))


def _ok(result: Any, description: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return JSONResponse(body)


def _error(code: int, description: str, **parameters: Any) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


_CANNED = {
    "500": (500, "Internal Server Error"),
    "502": (502, "Bad Gateway"),
    "403": (403, "Forbidden: bot was blocked by the user"),
}


def _canned(answer: str) -> JSONResponse | None:
    if answer.startswith("429"):
        retry_after = int(answer.partition(":")[2] or 1)
        return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
    if answer in _CANNED:
        return _error(*_CANNED[answer])
    return None  # "ok"


async def _outage() -> Response | None:
    """The shared failure plan, answered in Telegram's error shape."""
    failing = await state.maybe_fail("telegram")
    if failing is None or failing.status_code == 429:  # core's 429 is already Telegram's
        return failing
    return _error(
        failing.status_code,
        "Internal Server Error" if failing.status_code == 500 else "Gateway Timeout",
    )


def _chat(chat_id: int) -> dict[str, Any]:
    return {"id": chat_id, "type": "private", **fake.chats.get(chat_id, {"first_name": "Customer"})}


# --- Bot API methods ------------------------------------------------------------------------


# sendPhoto 10 MB, sendDocument 50 MB (https://core.telegram.org/bots/api#sending-files).
_FILE_METHODS = {
    "sendPhoto": ("photo", 10 * 1024 * 1024),
    "sendDocument": ("document", 50 * 1024 * 1024),
}


def _send_file(name: str) -> Any:
    """``sendPhoto``/``sendDocument`` with the file uploaded as multipart (InputFile)."""
    field_name, cap = _FILE_METHODS[name]

    def answer(params: dict[str, Any]) -> JSONResponse:
        upload = params.get("_upload")
        try:
            chat_id = int(params.get("chat_id") or "")
        except ValueError:
            return _error(400, "Bad Request: chat not found")
        if not upload:
            return _error(400, f"Bad Request: there is no {field_name} in the request")
        if upload["size"] > cap:
            return _error(400, "Bad Request: file is too big")
        if chat_id in fake.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        message: dict[str, Any] = {
            "message_id": _next_message_id(chat_id),
            "from": BOT_USER,
            "chat": _chat(chat_id),
            "date": int(time.time()),
        }
        file_id = f"{field_name}-{upload['sha256'][:16]}"
        if field_name == "photo":
            message["photo"] = [
                {
                    "file_id": file_id,
                    "file_unique_id": file_id,
                    "width": 1,
                    "height": 1,
                    "file_size": upload["size"],
                }
            ]
        else:
            message["document"] = {
                "file_id": file_id,
                "file_unique_id": file_id,
                "file_name": upload["filename"],
                "mime_type": upload["content_type"],
                "file_size": upload["size"],
            }
        if params.get("caption"):
            message["caption"] = params["caption"]
        state.record("telegram", name, {**params, "message_id": message["message_id"]})
        fake.sent.setdefault(chat_id, []).append(message)
        return _ok(message)

    return answer


def _send_message(params: dict[str, Any]) -> JSONResponse:
    text = str(params.get("text") or "")
    try:
        chat_id = int(params.get("chat_id") or "")
    except ValueError:
        return _error(400, "Bad Request: chat not found")
    if not text.strip():
        return _error(400, "Bad Request: message text is empty")
    if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
        return _error(400, "Bad Request: message is too long")
    if chat_id in fake.blocked:
        return _error(403, "Forbidden: bot was blocked by the user")
    replied = _replied(chat_id, params)
    message = {
        "message_id": _next_message_id(chat_id),
        "from": BOT_USER,
        "chat": _chat(chat_id),
        "date": int(time.time()),
        "text": text,
    }
    if replied is not None:
        message["reply_to_message"] = replied
    state.record("telegram", "sendMessage", {**params, "message_id": message["message_id"]})
    fake.sent.setdefault(chat_id, []).append(message)
    return _ok(message)


def _replied(chat_id: int, params: dict[str, Any]) -> dict[str, Any] | None:
    """The message a ``sendMessage`` answers (``reply_parameters``, or the older
    ``reply_to_message_id``), as Telegram nests it in the result."""
    wanted = params.get("reply_to_message_id")
    if params.get("reply_parameters"):
        try:
            wanted = json.loads(params["reply_parameters"]).get("message_id")
        except (ValueError, AttributeError):
            wanted = None
    if wanted is None:
        return None
    for message in [*fake.sent.get(chat_id, []), *fake.said.get(chat_id, [])]:
        if message["message_id"] == int(wanted):
            return {k: v for k, v in message.items() if k != "reply_to_message"}
    return None


def _get_file(params: dict[str, Any]) -> JSONResponse:
    stored = fake.files.get(str(params.get("file_id") or ""))
    if stored is None:
        return _error(400, "Bad Request: invalid file_id")
    state.record("telegram", "getFile", params)
    return _ok(
        {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.data),
            "file_path": stored.path,
        }
    )


def _set_webhook(params: dict[str, Any]) -> JSONResponse:
    url = str(params.get("url") or "")
    secret = params.get("secret_token")
    if secret is not None and not _SECRET_TOKEN.match(str(secret)):
        return _error(400, "Bad Request: secret token contains unallowed characters")
    state.record("telegram", "setWebhook", params)
    fake.webhook_url, fake.webhook_secret = url or None, secret
    fake.polling = not url
    return _ok(True, "Webhook was set" if url else "Webhook was deleted")


def _delete_webhook(params: dict[str, Any]) -> JSONResponse:
    state.record("telegram", "deleteWebhook", params)
    fake.webhook_url = fake.webhook_secret = None
    fake.polling = True
    if str(params.get("drop_pending_updates", "")).lower() == "true":
        fake.pending.clear()
    return _ok(True, "Webhook was deleted")


async def _get_updates(params: dict[str, Any]) -> JSONResponse:
    if fake.webhook_url:
        return _error(
            409,
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first",
        )
    offset = int(params.get("offset") or 0)
    limit = min(int(params.get("limit") or 100), 100)
    timeout = min(float(params.get("timeout") or 0), 50.0)
    allowed = json.loads(params["allowed_updates"]) if params.get("allowed_updates") else None
    fake.pending[:] = [u for u in fake.pending if u["update_id"] >= offset]  # confirmed
    deadline, epoch = time.monotonic() + timeout, fake.epoch
    while not fake.pending and (remaining := deadline - time.monotonic()) > 0:
        if fake.epoch != epoch:
            break
        fake.arrived.clear()
        try:
            await asyncio.wait_for(fake.arrived.wait(), remaining)
        except TimeoutError:
            break
    updates = [u for u in fake.pending if not allowed or any(k in u for k in allowed)][:limit]
    state.record("telegram", "getUpdates", params)
    return _ok(updates)


def _plain(method: str, result: Any) -> Any:
    def answer(params: dict[str, Any]) -> JSONResponse:
        state.record("telegram", method, params)
        return _ok(result)

    return answer


_METHODS: dict[str, Any] = {
    "getme": ("getMe", _plain("getMe", BOT_USER)),
    "sendmessage": ("sendMessage", _send_message),
    "sendphoto": ("sendPhoto", _send_file("sendPhoto")),
    "senddocument": ("sendDocument", _send_file("sendDocument")),
    "getfile": ("getFile", _get_file),
    "setwebhook": ("setWebhook", _set_webhook),
    "deletewebhook": ("deleteWebhook", _delete_webhook),
    "getupdates": ("getUpdates", _get_updates),
    "sendchataction": ("sendChatAction", _plain("sendChatAction", True)),
}


@router.api_route("/telegram/bot{token}/{method}", methods=["GET", "POST"])
async def bot_method(token: str, method: str, request: Request) -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    expected = TelegramSettings.get().telegram_bot_token
    if not _TOKEN.match(token) or (expected and token != expected):
        return _error(401, "Unauthorized")
    found = _METHODS.get(method.lower())  # Bot API method names are case-insensitive
    if found is None:
        return _error(404, "Not Found")
    name, handler = found
    params = await read_params(request)
    if name in _FILE_METHODS and "form" in request.headers.get("content-type", ""):
        # The file is a multipart part of its own: the field holds "attach://<part name>"
        # (aiogram), or is the part itself.
        field_name = _FILE_METHODS[name][0]
        reference = str(params.get(field_name) or "")
        part = reference.removeprefix("attach://") if reference.startswith("attach://") else None
        upload = (await request.form()).get(part or field_name)
        if upload is not None and not isinstance(upload, str):
            data = await upload.read()
            params["_upload"] = {
                "filename": upload.filename,
                "content_type": upload.content_type,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    script = fake.scripts.get(name)
    if script:
        canned = _canned(script.pop(0))
        if canned is not None:
            state.failed_calls += 1
            return canned
    result = handler(params)
    return await result if asyncio.iscoroutine(result) else result


@router.get("/telegram/file/bot{token}/{file_path:path}")
async def download(token: str, file_path: str) -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    for stored in fake.files.values():
        if stored.path == file_path:
            state.record("telegram", "download", {"file_path": file_path})
            return Response(stored.data, media_type=stored.content_type)
    return _error(404, "Not Found")


# --- acting as a customer -----------------------------------------------------------------


class SayIn(BaseModel):
    text: str = Field(default="", max_length=MAX_TEXT)
    sender: str = Field(default="1001", alias="from", pattern=r"^[1-9][0-9]{0,14}$")
    first_name: str = "Sandbox"
    last_name: str | None = None
    language_code: str | None = "en"
    voice: bool = Field(default=False, description="send a one-second voice note")
    edit: int | None = Field(default=None, description="message_id to edit: an edited_message")
    reply_to: int | None = Field(
        default=None, description="message_id in this chat (the bot's or the user's) to reply to"
    )
    deliver: bool = Field(
        default=True, description="false: only build the Update and answer it (tests post it)"
    )


def _voice_file() -> dict[str, Any]:
    n = next(_file_seq)
    data = silent_voice_note()
    stored = StoredFile(
        f"AwACAgIAAxkBAAIB{n:08d}", f"AgAD{n:08d}", f"voice/file_{n}.oga", data, "audio/ogg"
    )
    fake.files[stored.file_id] = stored
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.unique_id,
        "duration": 1,
        "mime_type": "audio/ogg",
        "file_size": len(data),
    }


def _update(body: SayIn) -> dict[str, Any]:
    user_id = int(body.sender)
    names = {"first_name": body.first_name, "last_name": body.last_name or f"Customer {user_id}"}
    fake.chats[user_id] = names
    user = {"id": user_id, "is_bot": False, **names}
    if body.language_code:
        user["language_code"] = body.language_code
    now = int(time.time())
    message: dict[str, Any] = {
        "message_id": body.edit or _next_message_id(user_id),
        "from": user,
        "chat": {"id": user_id, "type": "private", **names},
        "date": now,
    }
    if body.voice:
        message["voice"] = _voice_file()
        if body.text:
            message["caption"] = body.text
    else:
        message["text"] = body.text
    if body.reply_to is not None:
        replied = _replied(user_id, {"reply_to_message_id": body.reply_to})
        if replied is None:
            raise ValueError(f"no message {body.reply_to} in chat {user_id} to reply to")
        message["reply_to_message"] = replied
    if body.edit is None:
        fake.said.setdefault(user_id, []).append(message)
    if body.edit is not None:
        message["edit_date"] = now
        return {"update_id": next(_update_ids), "edited_message": message}
    return {"update_id": next(_update_ids), "message": message}


@router.post("/_sandbox/say/telegram", include_in_schema=False)
async def say(body: SayIn) -> JSONResponse:
    """Write to the bot as a Telegram user; delivered as Telegram would deliver it."""
    if not body.text and not body.voice:
        return JSONResponse({"error": "say something: text, or voice: true"}, status_code=422)
    try:
        update = _update(body)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    if not body.deliver:
        return JSONResponse({"update_id": update["update_id"], "update": update})
    settings = get_settings()
    url, secret = fake.webhook_url, fake.webhook_secret
    if url is None and not fake.polling and settings.public_url:
        url = f"{settings.public_url.rstrip('/')}/webhooks/telegram"
        secret = TelegramSettings.get().telegram_webhook_secret
    if url is None:
        fake.pending.append(update)
        fake.arrived.set()
        return JSONResponse({"update_id": update["update_id"], "queued": True}, status_code=202)
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(url, json=update, headers=headers)
    except httpx.HTTPError as exc:
        return JSONResponse({"error": f"could not reach {url}: {exc!r}"}, status_code=502)
    try:
        heliograph: Any = answer.json()
    except ValueError:
        heliograph = answer.text
    return JSONResponse(
        {"update_id": update["update_id"], "webhook": url, "heliograph": heliograph},
        status_code=answer.status_code,
    )


# --- test controls ------------------------------------------------------------------------


class BlockIn(BaseModel):
    chat_id: int
    blocked: bool = True


class ScriptIn(BaseModel):
    method: str = Field(description="e.g. sendMessage")
    answers: list[str] = Field(description='in order: "ok", "500", "502", "403", "429:SECONDS"')


class FileIn(BaseModel):
    file_id: str
    data_b64: str
    file_path: str
    content_type: str = "application/octet-stream"


@router.post("/_sandbox/telegram/block", include_in_schema=False)
async def block(body: BlockIn) -> dict[str, Any]:
    (fake.blocked.add if body.blocked else fake.blocked.discard)(body.chat_id)
    return {"blocked": sorted(fake.blocked)}


@router.post("/_sandbox/telegram/script", include_in_schema=False)
async def script(body: ScriptIn) -> dict[str, Any]:
    fake.scripts[body.method] = list(body.answers)
    return {"method": body.method, "answers": body.answers}


@router.post("/_sandbox/telegram/files", include_in_schema=False)
async def add_file(body: FileIn) -> dict[str, Any]:
    data = base64.b64decode(body.data_b64)
    unique = f"AgAD{next(_file_seq):08d}"
    fake.files[body.file_id] = StoredFile(
        body.file_id, unique, body.file_path, data, body.content_type
    )
    return {"file_id": body.file_id, "file_path": body.file_path, "file_size": len(data)}


@router.get("/_sandbox/telegram/chats/{chat_id}", include_in_schema=False)
async def chat(chat_id: int) -> dict[str, Any]:
    """What the bot sent to one chat, in order, each with its message_id."""
    return {"chat_id": chat_id, "sent": fake.sent.get(chat_id, [])}


@router.get("/_sandbox/telegram", include_in_schema=False)
async def show() -> dict[str, Any]:
    return {
        "webhook_url": fake.webhook_url,
        "polling": fake.polling,
        "pending_updates": len(fake.pending),
        "blocked": sorted(fake.blocked),
        "files": sorted(fake.files),
        "failed_calls": state.failed_calls,  # answered with an error, every provider
    }


@router.delete("/_sandbox/telegram", include_in_schema=False)
async def reset() -> dict[str, str]:
    epoch = fake.epoch + 1
    fake.arrived.set()  # let a waiting getUpdates answer
    fake.__init__(epoch=epoch)  # type: ignore[misc]
    return {"telegram": "reset"}
