"""A fake Twilio Messages API under ``/twilio``, and the Twilio that sandbox customers text through.

The real ``twilio`` Client, its ``api.base_url`` set to ``{sandbox}/twilio``, calls:

- ``POST /twilio/2010-04-01/Accounts/{AccountSid}/Messages.json`` (form: To, From, Body,
  StatusCallback, MediaUrl, ContentSid, ContentVariables), with the account SID and auth
  token as basic auth. The answer is a Message resource (201), or Twilio's error body
  ``{"code", "message", "more_info", "status"}``: 21604 / 21603 without To / From, 21619
  without a body, media or content, 21617 over 1,600 characters, 21610 to a number that texted
  STOP (Twilio's own opt-out list, which the sandbox keeps too), 20003 with bad credentials.
  The shared failure plan (``/_sandbox/fail`` with provider "twilio") answers 500/429 the
  way Twilio does. After a create with a StatusCallback, the fake reports "sent" and then
  "delivered" to it, each POST signed as Twilio signs (``RequestValidator.compute_signature``
  with the auth token), and asks again, a few times, when Heliograph says it did not know
  the SID yet (a callback can beat the sender's own commit).
- ``GET .../Messages/{Sid}.json`` and ``GET .../Messages/{Sid}/Media/{MediaSid}`` (basic auth),
  the media of the messages customers sent.

Acting as a customer: ``POST /_sandbox/say/sms`` and ``/_sandbox/say/whatsapp``
``{"text", "from", "name"?, "media"?: "image" | "voice"}`` post Twilio's signed form to
``{HELIOGRAPH_PUBLIC_URL}/webhooks/twilio/messages``. ``GET /_sandbox/twilio`` shows the
fake's state; ``DELETE`` resets it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from twilio.request_validator import RequestValidator

from channels.twilio.settings import TwilioSettings
from heliograph.settings import get_settings
from sandbox.core import SAY_CHANNELS, read_params, state
from sandbox.samples import sandbox_phone, silent_voice_note, tiny_png

router = APIRouter(tags=["twilio"])
SAY_CHANNELS.extend(["sms", "whatsapp"])

API = "/twilio/2010-04-01/Accounts/{account_sid}"
MAX_BODY = 1600
OPT_OUT = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
OPT_IN = {"START", "UNSTOP", "YES"}
CALLBACK_DELAY_S = 0.3  # between "queued" and "sent", and again before "delivered"
CALLBACK_TRIES = 8


@dataclass
class StoredMedia:
    data: bytes
    content_type: str


@dataclass
class TwilioFake:
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, StoredMedia] = field(default_factory=dict)
    unsubscribed: set[str] = field(default_factory=set)  # numbers that texted STOP
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # what Heliograph answered
    script: list[str] = field(default_factory=list)  # next answers to creates: "ok", "500", ...


fake = TwilioFake()
_tasks: set[asyncio.Task[Any]] = set()


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's REST error body (https://www.twilio.com/docs/usage/twilios-response)."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


async def _outage() -> Response | None:
    failing = await state.maybe_fail("twilio")
    if failing is None:
        return None
    if failing.status_code == 429:
        answer = _error(429, 20429, "Too Many Requests")
        answer.headers["Retry-After"] = failing.headers.get("Retry-After", "1")
        return answer
    return _error(failing.status_code, 20500, "An internal server error has occurred")


def _credentials_ok(request: Request, account_sid: str) -> bool:
    settings = TwilioSettings.get()
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    if user != account_sid:
        return False
    expected = (settings.twilio_account_sid, settings.twilio_auth_token)
    return not expected[0] or (user, password) == expected


def sign(url: str, params: dict[str, str]) -> str:
    """What Twilio puts in X-Twilio-Signature for a POST of ``params`` to ``url``."""
    return RequestValidator(TwilioSettings.get().twilio_auth_token).compute_signature(url, params)


async def _post_signed(url: str, params: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, data=params, headers={"X-Twilio-Signature": sign(url, params)})


def _start(coro: Any) -> None:
    task = asyncio.create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


# --- the Messages API ---------------------------------------------------------------------


def _resource(account_sid: str, sid: str, params: dict[str, Any]) -> dict[str, Any]:
    now = format_datetime(datetime.now(UTC), usegmt=True)
    uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": params.get("Body", ""),
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": params.get("From"),
        "messaging_service_sid": None,
        "num_media": "1" if params.get("MediaUrl") else "0",
        "num_segments": str(max(1, -(-len(params.get("Body", "")) // 153))),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": params.get("To"),
        "uri": f"{uri}.json",
    }


def _refusal(params: dict[str, Any]) -> JSONResponse | None:
    to, body = str(params.get("To") or ""), str(params.get("Body") or "")
    if not to:
        return _error(400, 21604, "A 'To' phone number is required.")
    if not params.get("From"):
        return _error(400, 21603, "A 'From' phone number is required.")
    if not (body or params.get("MediaUrl") or params.get("ContentSid")):
        return _error(400, 21619, "A text message body or media urls must be specified.")
    if len(body) > MAX_BODY:
        return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    if to in fake.unsubscribed:
        return _error(400, 21610, "Attempt to send to unsubscribed recipient")
    return None


def _scripted() -> JSONResponse | None:
    """The next scripted answer: "ok", "500", "429", or "400:CODE" (a Twilio error code)."""
    if not fake.script:
        return None
    answer = fake.script.pop(0)
    if answer == "ok":
        return None
    state.failed_calls += 1
    if answer == "429":
        return _error(429, 20429, "Too Many Requests")
    if answer.startswith("400:"):
        return _error(400, int(answer[4:]), f"Scripted refusal {answer[4:]}")
    return _error(int(answer), 20500, "An internal server error has occurred")


@router.post(API + "/Messages.json")
async def create_message(account_sid: str, request: Request) -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    if not _credentials_ok(request, account_sid):
        return _error(401, 20003, "Authenticate")
    params = await read_params(request)
    if "form" in request.headers.get("content-type", ""):
        urls = (await request.form()).getlist("MediaUrl")  # repeated: up to ten media
        if len(urls) > 1:
            params["MediaUrls"] = [str(u) for u in urls]
    scripted = _scripted()
    if scripted is not None:
        return scripted
    refused = _refusal(params)
    if refused is not None:
        return refused
    sid = _sid("SM")
    resource = _resource(account_sid, sid, params)
    fake.messages[sid] = resource
    state.record("twilio", "messages.create", {**params, "Sid": sid})
    if params.get("StatusCallback"):
        _start(_report(str(params["StatusCallback"]), resource, ["sent", "delivered"]))
    return JSONResponse(resource, status_code=201)


@router.get(API + "/Messages/{sid}.json")
async def fetch_message(account_sid: str, sid: str, request: Request) -> Response:
    if not _credentials_ok(request, account_sid):
        return _error(401, 20003, "Authenticate")
    resource = fake.messages.get(sid)
    if resource is None:
        return _error(404, 20404, f"The requested resource {request.url.path} was not found")
    return JSONResponse(resource)


@router.get(API + "/Messages/{sid}/Media/{media_sid}")
async def media(account_sid: str, sid: str, media_sid: str, request: Request) -> Response:
    failing = await _outage()
    if failing is not None:
        return failing
    if not _credentials_ok(request, account_sid):
        return _error(401, 20003, "Authenticate")
    stored = fake.media.get(media_sid)
    if stored is None:
        return _error(404, 20404, f"The requested resource {request.url.path} was not found")
    state.record("twilio", "media", {"MessageSid": sid, "MediaSid": media_sid})
    return Response(stored.data, media_type=stored.content_type)


async def _report(url: str, resource: dict[str, Any], statuses: list[str]) -> None:
    """Status callbacks as Twilio sends them (a form, signed), one per status change."""
    for status in statuses:
        await asyncio.sleep(CALLBACK_DELAY_S)
        resource["status"] = status
        params = {
            "AccountSid": resource["account_sid"],
            "ApiVersion": "2010-04-01",
            "From": str(resource["from"]),
            "MessageSid": resource["sid"],
            "MessageStatus": status,
            "SmsSid": resource["sid"],
            "SmsStatus": status,
            "To": str(resource["to"]),
        }
        for _ in range(CALLBACK_TRIES):
            try:
                answer = await _post_signed(url, params)
            except httpx.HTTPError as exc:
                fake.callbacks.append({"url": url, "status": status, "error": repr(exc)})
            else:
                fake.callbacks.append({"url": url, "status": status, "answer": answer.status_code})
                if answer.is_success and resource["sid"] not in _unknown(answer):
                    break
            await asyncio.sleep(CALLBACK_DELAY_S)


def _unknown(answer: httpx.Response) -> list[str]:
    try:
        return list(answer.json().get("unknown", []))
    except (ValueError, AttributeError):
        return []


# --- acting as a customer -----------------------------------------------------------------


class SayIn(BaseModel):
    text: str = Field(default="", max_length=MAX_BODY)
    sender: str = Field(default="+15550001001", alias="from", max_length=20)
    name: str | None = Field(default=None, description="WhatsApp profile name")
    media: Literal["image", "voice"] | None = None


def _inbound_form(body: SayIn, channel: str, request: Request) -> dict[str, str]:
    settings = TwilioSettings.get()
    account = settings.twilio_account_sid or "AC" + "0" * 32
    phone = sandbox_phone(body.sender)
    ours = settings.twilio_sms_from if channel == "sms" else settings.twilio_whatsapp_from
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    sid = _sid("SM" if not body.media else "MM")
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": account,
        "From": prefix + phone,
        "To": prefix + (ours.removeprefix("whatsapp:") or "+14155238886"),
        "Body": body.text,
        "NumMedia": "1" if body.media else "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    if channel == "whatsapp":
        form |= {"ProfileName": body.name or "Sandbox Customer", "WaId": phone.lstrip("+")}
        form["MessageType"] = {"image": "image", "voice": "audio"}.get(body.media or "", "text")
    if body.media:
        media_sid = _sid("ME")
        data, ctype = (
            (tiny_png(), "image/png")
            if body.media == "image"
            else (
                silent_voice_note(),
                "audio/ogg",
            )
        )
        fake.media[media_sid] = StoredMedia(data, ctype)
        base = str(request.base_url).rstrip("/")
        form["MediaUrl0"] = (
            f"{base}/twilio/2010-04-01/Accounts/{account}/Messages/{sid}/Media/{media_sid}"
        )
        form["MediaContentType0"] = ctype
    word = body.text.strip().upper()
    if channel == "sms" and word in OPT_OUT | OPT_IN:
        # Twilio keeps its own opt-out list for SMS and tells the webhook (Advanced Opt-Out).
        (fake.unsubscribed.add if word in OPT_OUT else fake.unsubscribed.discard)(phone)
        form["OptOutType"] = "STOP" if word in OPT_OUT else "START"
    return form


async def _say(body: SayIn, channel: str, request: Request) -> JSONResponse:
    if not body.text and not body.media:
        return JSONResponse({"error": "say something: text, or media"}, status_code=422)
    public = get_settings().public_url.rstrip("/")
    if not public:
        return JSONResponse({"error": "HELIOGRAPH_PUBLIC_URL is not set"}, status_code=409)
    form = _inbound_form(body, channel, request)
    url = f"{public}/webhooks/twilio/messages"
    try:
        answer = await _post_signed(url, form)
    except httpx.HTTPError as exc:
        return JSONResponse({"error": f"could not reach {url}: {exc!r}"}, status_code=502)
    return JSONResponse(
        {"message_sid": form["MessageSid"], "webhook": url, "heliograph": answer.text},
        status_code=answer.status_code,
    )


@router.post("/_sandbox/say/sms", include_in_schema=False)
async def say_sms(body: SayIn, request: Request) -> JSONResponse:
    return await _say(body, "sms", request)


@router.post("/_sandbox/say/whatsapp", include_in_schema=False)
async def say_whatsapp(body: SayIn, request: Request) -> JSONResponse:
    return await _say(body, "whatsapp", request)


class ScriptIn(BaseModel):
    answers: list[str] = Field(description='next creates: "ok", "500", "429", "400:21211"')


class MediaIn(BaseModel):
    data_b64: str
    content_type: str = "application/octet-stream"


@router.post("/_sandbox/twilio/script", include_in_schema=False)
async def script(body: ScriptIn) -> dict[str, Any]:
    fake.script = list(body.answers)
    return {"answers": fake.script}


@router.post("/_sandbox/twilio/media", include_in_schema=False)
async def add_media(body: MediaIn, request: Request) -> dict[str, Any]:
    """Keep a file as Twilio keeps a customer's MMS media; answers its MediaUrl."""
    account = TwilioSettings.get().twilio_account_sid or "AC" + "0" * 32
    message_sid, media_sid = _sid("MM"), _sid("ME")
    fake.media[media_sid] = StoredMedia(base64.b64decode(body.data_b64), body.content_type)
    base = str(request.base_url).rstrip("/")
    url = f"{base}/twilio/2010-04-01/Accounts/{account}/Messages/{message_sid}/Media/{media_sid}"
    return {"url": url, "media_sid": media_sid}


@router.get("/_sandbox/twilio", include_in_schema=False)
async def show() -> dict[str, Any]:
    return {
        "messages": list(fake.messages.values()),
        "unsubscribed": sorted(fake.unsubscribed),
        "callbacks": fake.callbacks,
    }


@router.delete("/_sandbox/twilio", include_in_schema=False)
async def reset() -> dict[str, str]:
    fake.__init__()  # type: ignore[misc]
    return {"twilio": "reset"}
