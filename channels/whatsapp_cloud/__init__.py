"""WhatsApp through Meta's Cloud API, over httpx: a second provider of the "whatsapp" channel.

- Subscription: ``GET /webhooks/whatsapp`` answers Meta's verification request, echoing
  ``hub.challenge`` when ``hub.verify_token`` is HELIOGRAPH_WHATSAPP_VERIFY_TOKEN
  (https://developers.facebook.com/docs/graph-api/webhooks/getting-started).
- Inbound: ``POST /webhooks/whatsapp``, checked against ``X-Hub-Signature-256`` (HMAC-SHA256
  of the raw body keyed with the app secret). Text, image, audio and voice notes, video,
  document, sticker, location and button replies become messages; ``statuses`` (sent,
  delivered, read, failed with Meta's error codes) update the replies they name. Each stored
  message keeps a webhook envelope narrowed to itself, so a replay or a reply finds it whole.
- Outbound: ``POST {base}/{version}/{phone_number_id}/messages``. Free-form text only inside
  the 24-hour customer-service window that opens with each message from the customer
  (https://developers.facebook.com/docs/whatsapp/cloud-api/guides/send-messages#customer-service-windows);
  outside it the reply is refused with the time of their last message, and an agent sends an
  approved template instead (``/template NAME [LANGUAGE] [PARAMETER ...]``, channels.messaging).
- Media: ``GET {base}/{version}/{media_id}`` for a short-lived URL, then that URL, both with
  the bearer token (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channels import signatures
from channels.base import (
    BadPayload,
    BadSignature,
    ChannelAdapter,
    InvalidFields,
    WebhookRequest,
    check_hmac_header,
    register,
    shutdown_hooks,
)
from channels.messaging import Template, consent_change, media_kind, parse_template
from channels.whatsapp_cloud.settings import WhatsAppCloudSettings
from crm_core.identity import SenderProfile
from crm_core.normalize import InvalidContact, normalize_phone
from heliograph import jobs
from heliograph.settings import get_settings
from inbox.attachments_out import SentFile
from inbox.ingest import InboundAttachment, InboundMessage
from inbox.intake import StatusUpdate
from inbox.media import FetchedMedia, MediaRef
from inbox.outbox import (
    DeliveryRefused,
    DeliveryResult,
    DeliveryRetry,
    OutboundMessage,
    send_with_files,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
CHANNEL = "whatsapp"
MAX_TEXT = 4096  # text.body limit of the messages endpoint
WINDOW = timedelta(hours=24)
DEFAULT_TEMPLATE_LANGUAGE = "en_US"
RE_ENGAGEMENT = 131047  # "more than 24 hours have passed since the customer last replied"
# Graph throttling codes: application, business, Cloud API, spam and pair rate limits.
RATE_LIMITS = {4, 80007, 130429, 131048, 131056}
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
TEMPLATE_HELP = "send an approved template instead: /template NAME [LANGUAGE] [PARAMETER ...]"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Media(_Open):
    id: str = Field(min_length=1, max_length=255)
    mime_type: str | None = Field(default=None, max_length=100)
    caption: str | None = None
    filename: str | None = Field(default=None, max_length=255)


class Location(_Open):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class CloudMessage(_Open):
    sender: str = Field(alias="from", min_length=1, max_length=32)
    id: str = Field(min_length=1, max_length=255)
    timestamp: str = Field(pattern=r"^\d{1,12}$")
    type: str
    text: dict[str, Any] | None = None
    image: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: Location | None = None
    button: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None


class CloudStatus(_Open):
    id: str = Field(min_length=1, max_length=255)
    status: str
    recipient_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class Contact(_Open):
    wa_id: str
    profile: dict[str, Any] = Field(default_factory=dict)


class Metadata(_Open):
    phone_number_id: str


class Value(_Open):
    metadata: Metadata | None = None
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    statuses: list[CloudStatus] = Field(default_factory=list)


class Change(_Open):
    field: str
    value: dict[str, Any]


class Entry(_Open):
    id: str
    changes: list[Change] = Field(default_factory=list)


class Notification(_Open):
    object: str
    entry: list[Entry]


def _invalid(exc: ValidationError, what: str) -> InvalidFields:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    summary = "; ".join(f"{e['field']}: {e['problem']}" for e in errors)
    return InvalidFields(f"not a valid WhatsApp {what}: {summary}", errors)


def _validate(model: type[Any], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, what) from exc


def _content(msg: CloudMessage) -> tuple[str, list[InboundAttachment]]:
    """The text an agent reads and the files to fetch; ("", []) for what we do not keep."""
    if msg.type == "text" and msg.text is not None:
        return str(msg.text.get("body", "")), []
    media = getattr(msg, msg.type, None) if msg.type in MEDIA_TYPES else None
    if isinstance(media, Media):
        kind = "image" if msg.type == "sticker" else media_kind(media.mime_type)
        attachment = InboundAttachment(
            kind=kind,
            content_type=media.mime_type,
            filename=media.filename,
            provider_file_id=media.id,
        )
        return media.caption or "", [attachment]
    if msg.type == "location" and msg.location is not None:
        place = ", ".join(p for p in (msg.location.name, msg.location.address) if p)
        where = f"({msg.location.latitude}, {msg.location.longitude})"
        return f"Location: {place + ' ' if place else ''}{where}", []
    if msg.type == "button" and msg.button is not None:
        return str(msg.button.get("text", "")), []
    if msg.type == "interactive" and msg.interactive is not None:
        reply = msg.interactive.get("button_reply") or msg.interactive.get("list_reply") or {}
        return str(reply.get("title", "")), []
    return "", []  # reactions, system notices, unsupported types


def _envelope(entry: Entry, value: dict[str, Any], contact: Any, message: Any) -> dict[str, Any]:
    """The webhook narrowed to one message: what the message row keeps as ``raw``."""
    narrowed = {k: v for k, v in value.items() if k not in ("contacts", "messages", "statuses")}
    if contact is not None:
        narrowed["contacts"] = [contact]
    narrowed["messages"] = [message]
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": entry.id, "changes": [{"field": "messages", "value": narrowed}]}],
    }


def is_cloud_context(context: Mapping[str, Any]) -> bool:
    """Whether a stored inbound payload (a reply's context) came through the Cloud API."""
    return context.get("object") == "whatsapp_business_account"


def last_customer_message_at(context: Mapping[str, Any] | None) -> datetime | None:
    try:
        stamp = context["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"]  # type: ignore[index]
        return datetime.fromtimestamp(int(stamp), UTC)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def check_window(context: Mapping[str, Any] | None, now: datetime | None = None) -> None:
    """Refuse a free-form reply outside the 24-hour customer-service window, saying why."""
    last = last_customer_message_at(context) if context and is_cloud_context(context) else None
    if last is None:
        raise DeliveryRefused(
            "outside WhatsApp's 24-hour customer-service window: the customer has not written "
            f"to this WhatsApp number yet; {TEMPLATE_HELP}"
        )
    age = (now or datetime.now(UTC)) - last
    if age > WINDOW:
        raise DeliveryRefused(
            "outside WhatsApp's 24-hour customer-service window: the customer last wrote at "
            f"{last:%Y-%m-%d %H:%M} UTC, {age.total_seconds() / 3600:.0f} hours ago; "
            f"{TEMPLATE_HELP}"
        )


def _template_payload(template: Template) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": template.name,
        "language": {"code": template.language or DEFAULT_TEMPLATE_LANGUAGE},
    }
    if template.parameters:
        parameters = [{"type": "text", "text": p} for p in template.parameters]
        body["components"] = [{"type": "body", "parameters": parameters}]
    return {"type": "template", "template": body}


def describe_errors(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "WhatsApp reported the message failed"
    first = errors[0]
    details = (first.get("error_data") or {}).get("details")
    title = first.get("title") or first.get("message") or "error"
    return f"WhatsApp error {first.get('code')} ({title}){': ' + details if details else ''}"


def _status_updates(value: Value) -> list[StatusUpdate]:
    updates: list[StatusUpdate] = []
    for status in value.statuses:
        if status.status not in ("sent", "delivered", "read", "failed"):
            continue  # e.g. "deleted", "warning"
        error = describe_errors(status.errors) if status.status == "failed" else None
        updates.append(StatusUpdate(CHANNEL, status.id, status.status, error))
    return updates


class WhatsAppCloudChannel(ChannelAdapter):
    """Meta's webhooks; the customers behind them write on the "whatsapp" channel."""

    name = "whatsapp_cloud"
    max_text_length = MAX_TEXT

    def enabled(self) -> bool:
        settings = WhatsAppCloudSettings.get()
        return bool(settings.whatsapp_access_token and settings.whatsapp_phone_number_id)

    def verify_subscription(self, query: Mapping[str, str]) -> str:
        """The GET handshake: the challenge to echo, or BadSignature (403)."""
        token = WhatsAppCloudSettings.get().whatsapp_verify_token
        if not token:
            raise BadSignature("HELIOGRAPH_WHATSAPP_VERIFY_TOKEN is not set: nothing is verified")
        if query.get("hub.mode") != "subscribe":
            raise BadPayload("hub.mode must be 'subscribe'")
        given = query.get("hub.verify_token") or ""
        if not signatures.matches(given, token):
            raise BadSignature("hub.verify_token does not match HELIOGRAPH_WHATSAPP_VERIFY_TOKEN")
        challenge = query.get("hub.challenge")
        if not challenge:
            raise BadPayload("hub.challenge is missing")
        return challenge

    async def verify(self, request: WebhookRequest) -> None:
        check_hmac_header(
            WhatsAppCloudSettings.get().whatsapp_app_secret,
            request.body,
            request.headers.get(SIGNATURE_HEADER),
        )

    def _changes(self, request: WebhookRequest) -> list[tuple[Entry, dict[str, Any], Value]]:
        """The ``messages`` changes for our phone number (others are not ours to answer)."""
        notification = _validate(Notification, request.json(), "webhook")
        if notification.object != "whatsapp_business_account":
            return []
        ours = WhatsAppCloudSettings.get().whatsapp_phone_number_id
        found = []
        for entry in notification.entry:
            for change in entry.changes:
                if change.field != "messages":
                    continue
                value = _validate(Value, change.value, "messages value")
                if ours and value.metadata is not None and value.metadata.phone_number_id != ours:
                    continue
                found.append((entry, change.value, value))
        return found

    def parse(self, request: WebhookRequest) -> list[InboundMessage | StatusUpdate]:
        """The notification's messages (each with its STOP / START consent change) and the
        status updates of our replies, read from one parse of the body."""
        items: list[InboundMessage | StatusUpdate] = []
        for entry, raw_value, value in self._changes(request):
            contacts = {c.wa_id: c for c in value.contacts}
            raw_contacts = {str(c.get("wa_id")): c for c in raw_value.get("contacts") or []}
            for raw in value.messages:
                msg = _validate(CloudMessage, raw, "message")
                text, attachments = _content(msg)
                if not text and not attachments:
                    continue
                try:
                    phone = normalize_phone("+" + msg.sender.lstrip("+"))
                except InvalidContact as exc:
                    raise InvalidFields(f"{msg.sender!r} is not a WhatsApp number") from exc
                contact = contacts.get(msg.sender)
                name = contact.profile.get("name") if contact is not None else None
                message = InboundMessage(
                    channel=CHANNEL,
                    provider_message_id=msg.id,
                    sender=SenderProfile(CHANNEL, phone, name=name or None, phone=phone),
                    text=text,
                    sent_at=datetime.fromtimestamp(int(msg.timestamp), UTC),
                    attachments=attachments,
                    raw=_envelope(entry, raw_value, raw_contacts.get(msg.sender), raw),
                )
                message.consent = consent_change(message)
                items.append(message)
            items.extend(_status_updates(value))
        return items

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        template = parse_template(message.text)
        if template is not None:  # allowed at any time: that is what templates are for
            return DeliveryResult(await _post(message, _template_payload(template)), "sent")
        check_window(message.reply_context)

        async def send_part(part: str) -> str:
            payload = {"type": "text", "text": {"preview_url": False, "body": part}}
            return await _post(message, payload)

        async def send_file(sent: SentFile) -> str:
            media_id = await _upload(sent)
            kind = "image" if sent.kind == "image" else "document"
            media: dict[str, Any] = {"id": media_id}
            if kind == "document":
                media["filename"] = sent.filename
            return await _post(message, {"type": kind, kind: media})

        if message.attachments:
            return await send_with_files(
                message, lambda: self.send_in_parts(message, send_part), send_file
            )
        return await self.send_in_parts(message, send_part)


async def _upload(sent: SentFile) -> str:
    """``POST /{phone-number-id}/media`` (multipart): the media id a message then names."""
    headers = _auth()
    url = _graph_url(WhatsAppCloudSettings.get().whatsapp_phone_number_id, "media")
    try:
        response = await (await _client()).post(
            url,
            data={"messaging_product": "whatsapp", "type": sent.content_type},
            files={"file": (sent.filename, sent.read(), sent.content_type)},
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise DeliveryRetry(f"could not reach the WhatsApp Cloud API: {exc!r}") from exc
    if not response.is_success:
        _delivery_failed(response)
    try:
        return str(response.json()["id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DeliveryRetry(f"the media upload answered no id: {response.text[:200]}") from exc


def _graph_url(*path: str) -> str:
    settings = WhatsAppCloudSettings.get()
    return "/".join([settings.whatsapp_api_base.rstrip("/"), settings.whatsapp_api_version, *path])


def _auth() -> dict[str, str]:
    settings = WhatsAppCloudSettings.get()
    if not (settings.whatsapp_access_token and settings.whatsapp_phone_number_id):
        raise DeliveryRefused(
            "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN and HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID are not set"
        )
    return {"Authorization": f"Bearer {settings.whatsapp_access_token}"}


async def _post(message: OutboundMessage, payload: dict[str, Any]) -> str:
    headers = _auth()
    url = _graph_url(WhatsAppCloudSettings.get().whatsapp_phone_number_id, "messages")
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.recipient_id.lstrip("+"),
        **payload,
    }
    try:
        response = await (await _client()).post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryRetry(f"could not reach the WhatsApp Cloud API: {exc!r}") from exc
    if not response.is_success:
        _delivery_failed(response)
    try:
        return str(response.json()["messages"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise DeliveryRetry(
            f"the Cloud API answered without a message id: {response.text[:200]}"
        ) from exc


def _graph_error(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _delivery_failed(response: httpx.Response) -> NoReturn:
    """Map a Graph error (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes)."""
    error = _graph_error(response)
    code = error.get("code")
    details = (error.get("error_data") or {}).get("details")
    text = f"error {code}: {error.get('message') or response.text[:200]}"
    text += f" ({details})" if details else ""
    if response.status_code == 429 or response.status_code >= 500 or code in RATE_LIMITS:
        retry_after = response.headers.get("Retry-After", "")
        delay = float(retry_after) if retry_after.isdigit() else None
        raise DeliveryRetry(f"WhatsApp answered {response.status_code}: {text}", delay)
    if code == RE_ENGAGEMENT:
        raise DeliveryRefused(
            f"outside WhatsApp's 24-hour customer-service window ({text}); {TEMPLATE_HELP}"
        )
    raise DeliveryRefused(f"WhatsApp refused the message: {text}")


# --- media ------------------------------------------------------------------------------------


async def fetch_media(ref: MediaRef) -> FetchedMedia:
    if not ref.provider_file_id:
        raise jobs.PermanentFailure("the attachment has no WhatsApp media id")
    try:
        headers = _auth()
    except DeliveryRefused as exc:
        raise jobs.PermanentFailure(str(exc)) from exc
    http = await _client()
    try:
        found = await http.get(_graph_url(ref.provider_file_id), headers=headers)
        _media_answer(found, "the media URL")
        info = found.json()
        download = await http.get(str(info["url"]), headers=headers, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise jobs.RetryLater(f"could not fetch the WhatsApp media: {exc!r}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise jobs.RetryLater(f"the Cloud API gave no media URL: {exc!r}") from exc
    if download.status_code == 404:
        raise jobs.RetryLater("the media URL expired (they last five minutes); asking again")
    _media_answer(download, "the media")
    content_type = info.get("mime_type") or download.headers.get("content-type")
    return FetchedMedia(download.content, ref.content_type or content_type)


def _media_answer(response: httpx.Response, what: str) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise jobs.RetryLater(f"whatsapp answered {response.status_code} for {what}")
    if response.status_code >= 400:
        error = _graph_error(response)
        raise jobs.PermanentFailure(
            f"whatsapp answered {response.status_code} for {what}: {error.get('message', '')}"
        )


# --- one httpx client per event loop ----------------------------------------------------------

_http: httpx.AsyncClient | None = None
_http_loop: asyncio.AbstractEventLoop | None = None


async def _client() -> httpx.AsyncClient:
    global _http, _http_loop
    loop = asyncio.get_running_loop()
    if _http is None or _http_loop is not loop:
        _http = httpx.AsyncClient(timeout=get_settings().outbound_timeout_s)
        _http_loop = loop
    return _http


async def close_client() -> None:
    global _http, _http_loop
    if _http is not None and _http_loop is asyncio.get_running_loop():
        await _http.aclose()
    _http, _http_loop = None, None


channel = WhatsAppCloudChannel()
register(channel)  # the webhook adapter; its conversations are on "whatsapp"
shutdown_hooks.append(close_client)
