"""The generic API channel (Chatwoot's "API inbox"): any platform can inject messages.

Contract (docs/api-channel.md):
- ``POST /api/v1/inbound`` with ``X-Heliograph-Signature: sha256=<hex HMAC-SHA256 of the raw
  body keyed with HELIOGRAPH_API_INBOUND_SECRET>`` and body
  ``{"message_id", "sender": {"id", "name"?, "email"?, "phone"?, "language"?, "timezone"?},
  "text", "sent_at"?}``.
- Replies are POSTed to ``HELIOGRAPH_API_OUTBOUND_URL``, signed the same way, as
  ``{"conversation_id", "message_id", "recipient": {"id"}, "text"}``; any 2xx is delivered.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytz
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from channels.api.settings import ApiSettings
from channels.base import (
    ChannelAdapter,
    InvalidFields,
    WebhookRequest,
    check_hmac_header,
    hmac_sha256_hex,
    register,
    shutdown_hooks,
)
from crm_core.identity import SenderProfile
from heliograph.bounds import UtcDatetime
from heliograph.settings import get_settings
from inbox.edits import InboundEdit
from inbox.ingest import InboundMessage
from inbox.outbox import DeliveryRefused, DeliveryResult, DeliveryRetry, OutboundMessage

SIGNATURE_HEADER = "X-Heliograph-Signature"


def _no_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold U+0000: refuse it here (422), not at the INSERT (500).
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


class ApiSender(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    _nul = field_validator("*")(_no_nul)

    id: str = Field(min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=64)
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None and value not in pytz.all_timezones_set:
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


class ApiInbound(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    message_id: str = Field(min_length=1, max_length=255)
    sender: ApiSender
    text: str = Field(max_length=65_536)
    sent_at: UtcDatetime | None = None  # in range, so converting never overflows

    _nul = field_validator("*")(_no_nul)

    @field_validator("sent_at", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        if value is None or isinstance(value, datetime):
            return value
        if not isinstance(value, str):
            raise ValueError("sent_at must be an ISO-8601 string")
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"sent_at is not ISO-8601: {value!r}") from exc


def _readable(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    return "; ".join(f"{e['field']}: {e['problem']}" for e in errors), errors


def _aware_utc(value: datetime | None) -> datetime | None:
    """A timestamp without an offset is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=pytz.utc)
    return value.astimezone(pytz.utc)


class ApiChannel(ChannelAdapter):
    name = "api"

    async def verify(self, request: WebhookRequest) -> None:
        secret = ApiSettings.get().api_inbound_secret
        check_hmac_header(secret, request.body, request.headers.get(SIGNATURE_HEADER))

    def parse(self, request: WebhookRequest) -> list[InboundMessage | InboundEdit]:
        data = request.json(strip_nul=False)  # refused: 422
        if not isinstance(data, dict):
            raise InvalidFields("the body must be a JSON object")
        try:
            body = ApiInbound.model_validate(data)
        except ValidationError as exc:
            message, errors = _readable(exc)
            raise InvalidFields(message, errors) from exc
        sender = body.sender
        return [
            InboundMessage(
                channel=self.name,
                provider_message_id=body.message_id,
                sender=SenderProfile(
                    channel=self.name,
                    external_id=sender.id,
                    name=sender.name,
                    email=sender.email,
                    phone=sender.phone,
                    language=sender.language,
                    timezone=sender.timezone,
                ),
                text=body.text,
                sent_at=_aware_utc(body.sent_at),
                raw=data,
            )
        ]

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        settings = ApiSettings.get()
        if not settings.api_outbound_url:
            raise DeliveryRefused("HELIOGRAPH_API_OUTBOUND_URL is not set")
        payload: dict[str, object] = {
            "conversation_id": message.conversation_id,
            "message_id": message.message_id,
            "recipient": {"id": message.recipient_id},
            "text": message.text,
        }
        if message.attachments:  # #16: each file as a signed URL on us, valid for 1 h
            payload["attachments"] = [
                {
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "size": f.size,
                    "url": f.url,
                }
                for f in message.attachments
            ]
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: "sha256=" + hmac_sha256_hex(settings.outbound_secret, body),
            # The receiver's idempotency key: a retried delivery carries the same id.
            "X-Heliograph-Delivery": str(message.message_id),
        }
        try:
            response = await _client().post(
                settings.api_outbound_url, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise DeliveryRetry(f"could not reach {settings.api_outbound_url}: {exc!r}") from exc
        return classify(response, "api")


def classify(response: httpx.Response, what: str) -> DeliveryResult:
    """Map an HTTP answer to delivered / retry (429, 5xx; honours Retry-After) / refused."""
    if 200 <= response.status_code < 300:
        return DeliveryResult(status="delivered")
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = response.headers.get("Retry-After")
        delay = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise DeliveryRetry(f"{what} answered {response.status_code}", delay)
    raise DeliveryRefused(
        f"{what} refused the message: {response.status_code} {response.text[:200]}"
    )


_http: httpx.AsyncClient | None = None


def _client() -> httpx.AsyncClient:
    global _http
    if _http is None:
        _http = httpx.AsyncClient(timeout=get_settings().outbound_timeout_s)
    return _http


async def close_client() -> None:
    global _http
    if _http is not None:
        await _http.aclose()
        _http = None


channel = ApiChannel()
register(channel)
shutdown_hooks.append(close_client)
