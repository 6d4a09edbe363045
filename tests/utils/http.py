"""Posting to the service's webhooks as each provider does, once or twice.

One ``post_<channel>`` per webhook (the provider's content type, signature or secret
header) and ``post_<channel>_twice``, which posts the same body twice and checks both were
answered 200 (a provider's retry must not be refused), through ``post_twice``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from tests.utils.signing import SECRET, signed_headers

PUBLIC = "https://support.heliograph.example"  # HELIOGRAPH_PUBLIC_URL the signatures are for

EMAIL_SECRET = "test-email-webhook-secret-0123456789"
EMAIL_AUTH = {"Authorization": f"Bearer {EMAIL_SECRET}", "Content-Type": "message/rfc822"}

TELEGRAM_TOKEN = "4242:test-telegram-token-0123456789"
TELEGRAM_WEBHOOK_SECRET = "test-telegram-webhook-secret-0123"
TELEGRAM_HEADER = "X-Telegram-Bot-Api-Secret-Token"

TWILIO_TOKEN = "test-twilio-auth-token-0123456789"
TWILIO_MESSAGES = "/webhooks/twilio/messages"
TWILIO_FORM = "application/x-www-form-urlencoded"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

WHATSAPP_APP_SECRET = "test-whatsapp-app-secret-0123456789"


async def post_twice(
    post: Callable[[httpx.AsyncClient, Any], Awaitable[httpx.Response]],
    client: httpx.AsyncClient,
    body: Any,
) -> list[httpx.Response]:
    """``post(client, body)`` twice; both must be answered 200."""
    answers = [await post(client, body), await post(client, body)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    return answers


# --- the API channel ------------------------------------------------------------------------


async def post_api(client: httpx.AsyncClient, body: bytes, secret: str = SECRET) -> httpx.Response:
    """POST ``body`` to ``/api/v1/inbound``, signed as an integrator signs it."""
    return await client.post("/api/v1/inbound", content=body, headers=signed_headers(body, secret))


# --- email ------------------------------------------------------------------------------------


async def post_email(http: httpx.AsyncClient, raw: bytes, **headers: str) -> httpx.Response:
    return await http.post("/webhooks/email", content=raw, headers={**EMAIL_AUTH, **headers})


async def post_email_twice(http: httpx.AsyncClient, raw: bytes) -> list[dict[str, Any]]:
    """The mail twice: stored once, the second a duplicate in the same conversation."""
    first, second = (a.json() for a in await post_twice(post_email, http, raw))
    assert (first["stored"], first["duplicate"]) == (1, False)
    assert (second["stored"], second["duplicate"]) == (0, True)
    assert first["conversation_id"] == second["conversation_id"]
    return [first, second]


# --- telegram ---------------------------------------------------------------------------------


async def post_telegram(
    client: httpx.AsyncClient,
    body: dict[str, Any] | bytes,
    secret: str | None = TELEGRAM_WEBHOOK_SECRET,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[TELEGRAM_HEADER] = secret
    return await client.post("/webhooks/telegram", content=content, headers=headers)


async def post_telegram_twice(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> list[dict[str, int]]:
    return [a.json() for a in await post_twice(post_telegram, client, body)]


# --- twilio -----------------------------------------------------------------------------------


def twilio_signature(url: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


async def post_twilio(
    client: httpx.AsyncClient,
    form: dict[str, str],
    path: str = TWILIO_MESSAGES,
    signed_for: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``form`` as Twilio does, signed for ``signed_for`` (default: the public URL)."""
    url = signed_for if signed_for is not None else PUBLIC + path
    sent = {"Content-Type": TWILIO_FORM, "X-Twilio-Signature": twilio_signature(url, form)}
    return await client.post(path, content=urlencode(form), headers={**sent, **(headers or {})})


async def post_twilio_twice(client: httpx.AsyncClient, form: dict[str, str]) -> None:
    for answer in await post_twice(post_twilio, client, form):
        assert answer.text == TWIML  # empty TwiML: Twilio itself answers nothing
        assert answer.headers["content-type"].startswith("application/xml")


# --- whatsapp (Cloud API) ---------------------------------------------------------------------


def whatsapp_signature(body: bytes, secret: str = WHATSAPP_APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_whatsapp(
    client: httpx.AsyncClient, payload: dict[str, Any] | bytes, signature: str | None = None
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature or whatsapp_signature(body),
    }
    return await client.post("/webhooks/whatsapp", content=body, headers=headers)


async def post_whatsapp_twice(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> list[dict[str, Any]]:
    return [a.json() for a in await post_twice(post_whatsapp, client, payload)]
