"""A fake WhatsApp Cloud API (Meta's Graph API) under ``/whatsapp``.

Heliograph's httpx client, its base at ``{sandbox}/whatsapp``, calls:

- ``POST /whatsapp/{version}/{phone_number_id}/messages`` with ``Authorization: Bearer``:
  text (``text.body`` up to 4,096 characters) or template messages. The answer has Graph's
  shape: ``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}``, or
  ``{"error": {"message", "type", "code", "error_data"?, "fbtrace_id"}}`` (190 bad token, 100
  bad parameter or unknown phone number id; the shared failure plan answers 500 / 429 with
  code 130429). Then the fake sends signed status webhooks, "sent" and "delivered", as Meta
  does; a free-form text to someone who has not written in 24 hours is accepted and then
  "failed" with error 131047, also as Meta does.
- ``GET /whatsapp/{version}/{media_id}`` -> ``{"url", "mime_type", "sha256", "file_size", "id"}``
  and ``GET /whatsapp/attachments/?mid=...`` (the bearer token again) for the bytes.

Webhooks go to the callback URL subscribed with ``POST /_sandbox/whatsapp/subscribe``
``{"callback_url", "verify_token"}`` (which runs Meta's GET verification handshake first),
else to ``{HELIOGRAPH_PUBLIC_URL}/webhooks/whatsapp``, signed with ``X-Hub-Signature-256``
(HMAC-SHA256 of the body with HELIOGRAPH_WHATSAPP_APP_SECRET). A status webhook Heliograph
reports as unknown (it can beat the sender's commit) is sent again, a few times, like Meta
redelivers. Acting as a customer: ``POST /_sandbox/say/whatsapp_cloud``
``{"text", "from", "name"?, "media"?: "image" | "voice"}``. ``POST /_sandbox/whatsapp/window``
``{"wa_id", "hours_ago"}`` moves a customer's last message back in time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from channels.whatsapp_cloud.settings import WhatsAppCloudSettings
from heliograph.settings import get_settings
from sandbox.core import SAY_CHANNELS, state
from sandbox.samples import sandbox_phone, silent_voice_note, tiny_png

router = APIRouter(tags=["whatsapp cloud"])
SAY_CHANNELS.append("whatsapp_cloud")

WABA_ID = "102290129340398"  # the sample WhatsApp Business Account id of Meta's reference
DISPLAY_NUMBER = "15550783881"
MAX_TEXT = 4096
WINDOW_S = 24 * 3600
STATUS_DELAY_S = 0.3
WEBHOOK_TRIES = 8


@dataclass
class StoredMedia:
    data: bytes
    mime_type: str


@dataclass
class CloudFake:
    callback_url: str | None = None
    media: dict[str, StoredMedia] = field(default_factory=dict)
    last_inbound: dict[str, float] = field(default_factory=dict)  # wa_id -> unix time
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # wamid -> request body
    webhooks: list[dict[str, Any]] = field(default_factory=list)  # what Heliograph answered


fake = CloudFake()
_tasks: set[asyncio.Task[Any]] = set()


def _wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()


def _error(status: int, code: int, message: str, details: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(11),
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return JSONResponse({"error": error}, status_code=status)


async def _outage() -> Response | None:
    failing = await state.maybe_fail("whatsapp")
    if failing is None:
        return None
    if failing.status_code == 429:
        answer = _error(429, 130429, "Rate limit hit", "Cloud API message throughput reached")
        answer.headers["Retry-After"] = failing.headers.get("Retry-After", "1")
        return answer
    return _error(failing.status_code, 1, "An unknown error has occurred.")


def _token_ok(request: Request) -> bool:
    expected = WhatsAppCloudSettings.get().whatsapp_access_token
    given = request.headers.get("authorization", "")
    if not given.startswith("Bearer ") or len(given) <= 7:
        return False
    return not expected or hmac.compare_digest(given[7:], expected)


def _bad_token() -> JSONResponse:
    return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")


def _signed(body: bytes) -> dict[str, str]:
    secret = WhatsAppCloudSettings.get().whatsapp_app_secret.encode()
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def _callback_url() -> str | None:
    public = get_settings().public_url.rstrip("/")
    return fake.callback_url or (f"{public}/webhooks/whatsapp" if public else None)


def _notification(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
        **value,
    }
    changes = [{"value": value, "field": "messages"}]
    return {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": changes}]}


async def _deliver(payload: dict[str, Any]) -> httpx.Response | None:
    url = _callback_url()
    if url is None:
        return None
    body = json.dumps(payload).encode()
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, content=body, headers=_signed(body))


def _start(coro: Any) -> None:
    task = asyncio.create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


# --- the Graph API --------------------------------------------------------------------------


def _refusal(phone_number_id: str, body: dict[str, Any]) -> JSONResponse | None:
    ours = WhatsAppCloudSettings.get().whatsapp_phone_number_id
    if ours and phone_number_id != ours:
        return _error(
            400,
            100,
            f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, "
            "cannot be loaded due to missing permissions, or does not support this operation",
        )
    if body.get("messaging_product") != "whatsapp":
        return _error(400, 100, "The parameter messaging_product is required.")
    if not body.get("to"):
        return _error(400, 100, "The parameter to is required.")
    kind = body.get("type", "text")
    if kind == "text":
        text = (body.get("text") or {}).get("body")
        if not isinstance(text, str) or not text:
            return _error(400, 100, "The parameter text['body'] is required.")
        if len(text) > MAX_TEXT:
            return _error(400, 100, "Param text['body'] must be at most 4096 characters long.")
    elif kind == "template":
        if not (body.get("template") or {}).get("name"):
            return _error(400, 100, "The parameter template['name'] is required.")
    elif kind in ("image", "document"):
        media = body.get(kind) or {}
        if not (media.get("id") or media.get("link")):
            return _error(400, 100, f"The parameter {kind}['id'] or {kind}['link'] is required.")
        if media.get("id") and str(media["id"]) not in fake.media:
            return _error(400, 131053, "Media upload error", f"unknown media id {media['id']}")
    return None


# Uploads: images (jpeg, png) up to 5 MB, documents up to 100 MB (Cloud API media reference).
_UPLOAD_LIMITS = {"image/jpeg": 5 * 1024 * 1024, "image/png": 5 * 1024 * 1024}
_DOCUMENT_MAX = 100 * 1024 * 1024


@router.post("/whatsapp/{version}/{phone_number_id}/media")
async def upload_media(version: str, phone_number_id: str, request: Request) -> Response:
    """``POST /{phone-number-id}/media`` (multipart: messaging_product, type, file)."""
    failing = await _outage()
    if failing is not None:
        return failing
    if not _token_ok(request):
        return _bad_token()
    form = await request.form()
    upload = form.get("file")
    if form.get("messaging_product") != "whatsapp":
        return _error(400, 100, "The parameter messaging_product is required.")
    if upload is None or isinstance(upload, str):
        return _error(400, 100, "The parameter file is required.")
    data = await upload.read()
    mime = str(form.get("type") or upload.content_type or "application/octet-stream")
    if len(data) > _UPLOAD_LIMITS.get(mime, _DOCUMENT_MAX):
        return _error(400, 131053, "Media upload error", "file is too big")
    media_id = str(secrets.randbelow(10**15) + 10**15)
    fake.media[media_id] = StoredMedia(data, mime)
    state.record(
        "whatsapp",
        "media.upload",
        {"id": media_id, "type": mime, "filename": upload.filename, "size": len(data)},
    )
    return JSONResponse({"id": media_id})


@router.post("/whatsapp/{version}/{phone_number_id}/messages")
async def send_message(version: str, phone_number_id: str, request: Request) -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    if not _token_ok(request):
        return _bad_token()
    try:
        body = await request.json()
    except ValueError:
        return _error(400, 100, "Invalid JSON for postcard")
    if not isinstance(body, dict):
        return _error(400, 100, "Invalid parameter")
    refused = _refusal(phone_number_id, body)
    if refused is not None:
        return refused
    wamid, to = _wamid(), str(body["to"]).lstrip("+")
    fake.sent[wamid] = body
    state.record("whatsapp", "messages", {**body, "id": wamid, "version": version})
    window_open = time.time() - fake.last_inbound.get(to, 0) <= WINDOW_S
    if body.get("type", "text") != "template" and not window_open:
        statuses: list[tuple[str, list[dict[str, Any]]]] = [("failed", [_re_engagement()])]
    else:
        statuses = [("sent", []), ("delivered", [])]
    _start(_report(phone_number_id, wamid, to, statuses))
    return JSONResponse(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": str(body["to"]), "wa_id": to}],
            "messages": [{"id": wamid}],
        }
    )


def _re_engagement() -> dict[str, Any]:
    return {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {
            "details": "Message failed to send because more than 24 hours have passed since "
            "the customer last replied to this number."
        },
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


async def _report(
    phone_number_id: str, wamid: str, to: str, statuses: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    for status, errors in statuses:
        await asyncio.sleep(STATUS_DELAY_S)
        item: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": to,
        }
        if errors:
            item["errors"] = errors
        payload = _notification(phone_number_id, {"statuses": [item]})
        for _ in range(WEBHOOK_TRIES):
            try:
                answer = await _deliver(payload)
            except httpx.HTTPError as exc:
                fake.webhooks.append({"status": status, "error": repr(exc)})
            else:
                if answer is None:
                    return
                fake.webhooks.append({"status": status, "answer": answer.status_code})
                if answer.is_success and wamid not in _unknown(answer):
                    break
            await asyncio.sleep(STATUS_DELAY_S)


def _unknown(answer: httpx.Response) -> list[str]:
    try:
        return list(answer.json().get("unknown_statuses", []))
    except (ValueError, AttributeError):
        return []


@router.get("/whatsapp/attachments/")
async def download(request: Request, mid: str = "") -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    if not _token_ok(request):
        return _bad_token()
    stored = fake.media.get(mid)
    if stored is None:
        return _error(404, 100, "Media not found or expired")
    state.record("whatsapp", "download", {"mid": mid})
    return Response(stored.data, media_type=stored.mime_type)


@router.get("/whatsapp/{version}/{media_id}")
async def media_url(version: str, media_id: str, request: Request) -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    if not _token_ok(request):
        return _bad_token()
    stored = fake.media.get(media_id)
    if stored is None:
        return _error(
            400, 100, f"Unsupported get request. Object with ID '{media_id}' does not exist"
        )
    state.record("whatsapp", "media", {"id": media_id})
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "messaging_product": "whatsapp",
            "url": f"{base}/whatsapp/attachments/?mid={media_id}&ext={int(time.time())}",
            "mime_type": stored.mime_type,
            "sha256": hashlib.sha256(stored.data).hexdigest(),
            "file_size": len(stored.data),
            "id": media_id,
        }
    )


# --- acting as a customer -------------------------------------------------------------------


class SayIn(BaseModel):
    text: str = Field(default="", max_length=MAX_TEXT)
    sender: str = Field(default="15550001001", alias="from", max_length=20)
    name: str = "Sandbox Customer"
    media: Literal["image", "voice"] | None = None


def _inbound(body: SayIn, wa_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"from": wa_id, "id": _wamid(), "timestamp": str(int(time.time()))}
    if body.media is None:
        return {**message, "type": "text", "text": {"body": body.text}}
    media_id = str(secrets.randbelow(10**15) + 10**15)
    if body.media == "image":
        data, mime, kind = tiny_png(), "image/png", "image"
    else:
        data, mime, kind = silent_voice_note(), "audio/ogg; codecs=opus", "audio"
    fake.media[media_id] = StoredMedia(data, mime)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    media: dict[str, Any] = {"mime_type": mime, "sha256": digest, "id": media_id}
    if kind == "audio":
        media["voice"] = True
    elif body.text:
        media["caption"] = body.text
    return {**message, "type": kind, kind: media}


def _wa_id(sender: str) -> str:
    """A WhatsApp id is the number without "+"; a short id like ``1001`` gets a 555 number."""
    digits = sender.lstrip("+")
    if sender.startswith("+") or len(digits) >= 10:
        return digits
    return sandbox_phone(sender).lstrip("+")


@router.post("/_sandbox/say/whatsapp_cloud", include_in_schema=False)
async def say(body: SayIn) -> JSONResponse:
    """Write to the business number as a WhatsApp user; Meta's webhook carries it."""
    if not body.text and not body.media:
        return JSONResponse({"error": "say something: text, or media"}, status_code=422)
    wa_id = _wa_id(body.sender)
    message = _inbound(body, wa_id)
    fake.last_inbound[wa_id] = time.time()
    contact = {"profile": {"name": body.name}, "wa_id": wa_id}
    phone_number_id = WhatsAppCloudSettings.get().whatsapp_phone_number_id or "106540352242922"
    payload = _notification(phone_number_id, {"contacts": [contact], "messages": [message]})
    try:
        answer = await _deliver(payload)
    except httpx.HTTPError as exc:
        return JSONResponse({"error": f"could not reach the webhook: {exc!r}"}, status_code=502)
    if answer is None:
        return JSONResponse(
            {"error": "no callback URL: subscribe one or set HELIOGRAPH_PUBLIC_URL"}, 409
        )
    try:
        heliograph: Any = answer.json()
    except ValueError:
        heliograph = answer.text
    return JSONResponse(
        {"message_id": message["id"], "wa_id": wa_id, "heliograph": heliograph},
        status_code=answer.status_code,
    )


# --- test controls --------------------------------------------------------------------------


class SubscribeIn(BaseModel):
    callback_url: str
    verify_token: str


class WindowIn(BaseModel):
    wa_id: str
    hours_ago: float = Field(ge=0)


class MediaIn(BaseModel):
    data_b64: str
    mime_type: str = "application/octet-stream"


@router.post("/_sandbox/whatsapp/media", include_in_schema=False)
async def add_media(body: MediaIn) -> dict[str, Any]:
    """Keep a file as Meta keeps a customer's media; answers its media id."""
    media_id = str(secrets.randbelow(10**15) + 10**15)
    fake.media[media_id] = StoredMedia(base64.b64decode(body.data_b64), body.mime_type)
    return {"id": media_id}


@router.post("/_sandbox/whatsapp/subscribe", include_in_schema=False)
async def subscribe(body: SubscribeIn) -> JSONResponse:
    """Meta's verification request: GET the callback with a challenge it must echo."""
    challenge = str(secrets.randbelow(10**9))
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": challenge,
        "hub.verify_token": body.verify_token,
    }
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(body.callback_url, params=params)
    except httpx.HTTPError as exc:
        return JSONResponse({"error": f"could not reach {body.callback_url}: {exc!r}"}, 502)
    verified = answer.status_code == 200 and answer.text == challenge
    if verified:
        fake.callback_url = body.callback_url
    return JSONResponse(
        {"verified": verified, "status": answer.status_code, "answer": answer.text[:200]},
        status_code=200 if verified else 400,
    )


@router.post("/_sandbox/whatsapp/window", include_in_schema=False)
async def window(body: WindowIn) -> dict[str, Any]:
    fake.last_inbound[body.wa_id] = time.time() - body.hours_ago * 3600
    return {"wa_id": body.wa_id, "last_inbound": fake.last_inbound[body.wa_id]}


@router.get("/_sandbox/whatsapp", include_in_schema=False)
async def show() -> dict[str, Any]:
    return {
        "callback_url": fake.callback_url,
        "sent": fake.sent,
        "media": sorted(fake.media),
        "webhooks": fake.webhooks,
    }


@router.delete("/_sandbox/whatsapp", include_in_schema=False)
async def reset() -> dict[str, str]:
    fake.__init__()  # type: ignore[misc]
    return {"whatsapp": "reset"}
