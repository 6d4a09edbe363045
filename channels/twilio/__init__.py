"""SMS and WhatsApp through Twilio (the ``twilio`` library): form webhooks in, Messages API out.

- Inbound: ``POST /webhooks/twilio/messages``, Twilio's form
  (https://www.twilio.com/docs/messaging/guides/webhook-request). A sender ``whatsapp:+E164``
  writes on the channel "whatsapp", any other number on "sms". The identity is the E.164
  number, also given to the profile as a phone, so one person is one customer across SMS,
  WhatsApp and (through the profile) email. ``MediaUrlN`` / ``MediaContentTypeN`` become
  attachments, downloaded with the account's credentials by ``attachment.fetch`` jobs.
- Every request is checked with ``RequestValidator`` against the URL Twilio called, which is
  HELIOGRAPH_PUBLIC_URL + the path + the query string: behind a proxy the host and scheme we
  see are not the ones Twilio signed (https://www.twilio.com/docs/usage/webhooks/webhooks-security).
- Status callbacks, ``POST /webhooks/twilio/status``: MessageStatus sent / delivered / read /
  undelivered / failed with ErrorCode (https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks).
- Outbound: ``messages.create_async`` through a ``Client`` whose ``api.base_url`` is
  HELIOGRAPH_TWILIO_API_BASE. From is HELIOGRAPH_TWILIO_SMS_FROM or
  ``whatsapp:`` + HELIOGRAPH_TWILIO_WHATSAPP_FROM, StatusCallback is ours. A body over 1,600
  characters (Twilio's limit) goes as several messages, each recorded before the next.
- Errors: 429 and 5xx are retried; 21610 (the recipient texted STOP to Twilio) opts the
  identity out and refuses; any other 4xx refuses with Twilio's code and message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import httpx
from twilio.base import values
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import (
    BadPayload,
    BadSignature,
    ChannelAdapter,
    WebhookRequest,
    register,
    shutdown_hooks,
)
from channels.messaging import Template, consent_change, media_kind, parse_template
from channels.twilio.settings import TwilioSettings
from crm_core.identity import SenderProfile, set_opt_out
from crm_core.normalize import InvalidContact, normalize_phone
from heliograph import jobs
from heliograph.db import get_db
from heliograph.settings import get_settings
from inbox.attachments_out import SentFile
from inbox.edits import InboundEdit
from inbox.ingest import InboundAttachment, InboundMessage
from inbox.intake import StatusUpdate
from inbox.media import FetchedMedia, MediaRef, register_fetcher
from inbox.outbox import (
    DeliveryRefused,
    DeliveryResult,
    DeliveryRetry,
    OutboundMessage,
    register_sender,
    send_with_files,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
FORM_TYPE = "application/x-www-form-urlencoded"
WHATSAPP = "whatsapp:"
MAX_BODY = 1600
MAX_MEDIA = 10  # Twilio attaches at most ten media items to a message
STATUS_PATH = "/webhooks/twilio/status"
# An empty TwiML answer: Twilio sends nothing back by itself; agents answer through the outbox.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

# MessageStatus -> the outbox's delivery status; queued, accepted, sending, scheduled,
# receiving and received say nothing the outbox does not know already.
_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
UNSUBSCRIBED = 21610
# What the codes an agent meets most mean (https://www.twilio.com/docs/api/errors).
ERRORS = {
    21211: "the 'To' number is not a valid phone number",
    21408: "sending to this region is not enabled on the account",
    21610: "the recipient has opted out (texted STOP) of messages from this number",
    21614: "the 'To' number is not a mobile number",
    30003: "unreachable destination handset",
    30004: "message blocked by the recipient or the carrier",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "filtered by the carrier",
    30008: "unknown error from the carrier",
    63016: "outside WhatsApp's 24-hour customer-service window: only an approved template "
    "can be sent (/template HX... [PARAMETER ...])",
}


def read_form(request: WebhookRequest) -> dict[str, str]:
    """Twilio's URL-encoded form as a dict; anything else is a 400 that says why."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise BadPayload(f"Twilio posts {FORM_TYPE}, this request is {ctype or 'untyped'}")
    try:
        text = request.body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPayload(f"the body is not a URL-encoded form: {exc}") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise BadPayload(f"the form field {key!r} appears more than once")
        if "\x00" in value:
            raise BadPayload(f"the form field {key!r} contains the NUL character")
        form[key] = value
    return form


def signed_url(request: WebhookRequest) -> str:
    """The URL Twilio called and signed: our public URL, this path, this query string.

    Without HELIOGRAPH_PUBLIC_URL the URL the request arrived on is used (no proxy between).
    A public URL with a path (``https://example.com/helio``) is a proxy prefix; a proxy that
    passes the prefix through is allowed for too.
    """
    parts = urlsplit(request.url)
    base = get_settings().public_url.rstrip("/") or f"{parts.scheme}://{parts.netloc}"
    prefix, path = urlsplit(base).path, parts.path
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :]
    return base + path + (f"?{parts.query}" if parts.query else "")


def address(value: str) -> tuple[str, str]:
    """``whatsapp:+14155238886`` -> ("whatsapp", "+14155238886"); ``+1415...`` -> ("sms", ...)."""
    channel = "whatsapp" if value.lower().startswith(WHATSAPP) else "sms"
    try:
        return channel, normalize_phone(value)
    except InvalidContact as exc:
        raise BadPayload(f"{value!r} is not a phone number Heliograph can answer") from exc


def _media(form: dict[str, str]) -> list[InboundAttachment]:
    count = form.get("NumMedia") or "0"
    if not count.isdigit():
        raise BadPayload(f"NumMedia must be a number, not {count!r}")
    found: list[InboundAttachment] = []
    for index in range(min(int(count), MAX_MEDIA)):
        url = form.get(f"MediaUrl{index}")
        if not url or len(url) > 2000:
            raise BadPayload(f"NumMedia is {count} but MediaUrl{index} is missing or too long")
        content_type = form.get(f"MediaContentType{index}") or None
        found.append(
            InboundAttachment(
                kind=media_kind(content_type),
                url=url,
                content_type=content_type,
                provider_file_id=url.rstrip("/").rsplit("/", 1)[-1][:255],  # the ME... sid
            )
        )
    return found


def _location(form: dict[str, str]) -> str:
    """WhatsApp location messages carry Latitude/Longitude (and Label/Address), no Body."""
    if not (form.get("Latitude") and form.get("Longitude")):
        return ""
    place = ", ".join(p for p in (form.get("Label"), form.get("Address")) if p)
    return f"Location: {place + ' ' if place else ''}({form['Latitude']}, {form['Longitude']})"


def consent_of(message: InboundMessage) -> bool | None:
    """Twilio's own verdict (OptOutType, with Advanced Opt-Out) first, else the keywords."""
    kind = str((message.raw or {}).get("OptOutType", "")).upper()
    if kind == "STOP":
        return True
    if kind == "START":
        return False
    return consent_change(message)


def describe_error(code: str | int | None, message: str | None = None) -> str:
    if not code:
        return f"Twilio reported a failure{': ' + message if message else ''}"
    meaning = ERRORS.get(int(code)) if str(code).isdigit() else None
    return (
        f"Twilio error {code}: {meaning or message or 'see https://www.twilio.com/docs/api/errors'}"
    )


def is_twilio_context(context: dict[str, Any]) -> bool:
    """Whether a stored inbound payload (a reply's context) came through Twilio."""
    return "MessageSid" in context and "AccountSid" in context


def whatsapp_enabled() -> bool:
    settings = TwilioSettings.get()
    return bool(
        settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_whatsapp_from
    )


class TwilioChannel(ChannelAdapter):
    """Twilio's webhooks (the customers behind them write on "sms" and "whatsapp")."""

    name = "twilio"
    max_text_length = MAX_BODY

    def enabled(self) -> bool:
        settings = TwilioSettings.get()
        return bool(settings.twilio_account_sid and settings.twilio_auth_token)

    async def verify(self, request: WebhookRequest) -> None:
        settings = TwilioSettings.get()
        if not self.enabled():
            raise BadSignature(
                "the Twilio channel is off (HELIOGRAPH_TWILIO_ACCOUNT_SID or _AUTH_TOKEN unset)"
            )
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise BadSignature(f"the {SIGNATURE_HEADER} header is missing")
        form = read_form(request)
        url = signed_url(request)
        if not RequestValidator(settings.twilio_auth_token).validate(url, form, signature):
            raise BadSignature(f"the {SIGNATURE_HEADER} is not Twilio's signature of {url}")

    def parse(self, request: WebhookRequest) -> list[InboundMessage | InboundEdit]:
        """A message webhook as the message, with its STOP / START consent change."""
        form = read_form(request)
        missing = [name for name in ("MessageSid", "From") if not form.get(name)]
        if missing:
            raise BadPayload(f"not a Twilio message webhook: no {' and no '.join(missing)}")
        channel, phone = address(form["From"])
        attachments = _media(form)
        text = form.get("Body", "") or _location(form)
        if not text and not attachments:
            return []  # e.g. a WhatsApp reaction: nothing to keep
        sender = SenderProfile(
            channel=channel, external_id=phone, name=form.get("ProfileName") or None, phone=phone
        )
        message = InboundMessage(
            channel=channel,
            provider_message_id=form["MessageSid"],
            sender=sender,
            text=text,
            attachments=attachments,
            raw=form,
        )
        message.consent = consent_of(message)
        return [message]

    def parse_status(self, request: WebhookRequest) -> StatusUpdate | None:
        """A status callback as an update of the reply it names (``None``: nothing new)."""
        form = read_form(request)
        sid = form.get("MessageSid") or form.get("SmsSid")
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        if not sid or not status:
            raise BadPayload("a status callback needs MessageSid and MessageStatus")
        mapped = _STATUSES.get(status)
        if mapped is None:
            return None
        to = form.get("To", "")
        channel = "whatsapp" if to.lower().startswith(WHATSAPP) else "sms"
        if mapped != "failed":
            return StatusUpdate(channel, sid, mapped)
        code = form.get("ErrorCode")
        opted_out = None
        if code == str(UNSUBSCRIBED) and to:
            opted_out = address(to)[1]
        error = describe_error(code, form.get("ErrorMessage"))
        return StatusUpdate(channel, sid, mapped, error, opted_out)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        sender = _sender(message.channel)
        template = parse_template(message.text) if message.channel == "whatsapp" else None
        if template is not None:
            return DeliveryResult(await _send_template(message, sender, template), "sent")

        async def send_part(part: str) -> str:
            return await _create(message, from_=sender, body=part)

        async def send_file(sent: SentFile) -> str:
            # Twilio fetches MediaUrl itself: a signed link on us, valid for an hour.
            return await _create(message, from_=sender, media_url=[sent.url])

        if message.attachments:
            return await send_with_files(
                message, lambda: self.send_in_parts(message, send_part), send_file
            )
        return await self.send_in_parts(message, send_part)


def _sender(channel: str) -> str:
    settings = TwilioSettings.get()
    if channel == "sms":
        if not settings.twilio_sms_from:
            raise DeliveryRefused("HELIOGRAPH_TWILIO_SMS_FROM is not set: no number to send from")
        return settings.twilio_sms_from
    if channel == "whatsapp":
        number = settings.twilio_whatsapp_from.removeprefix(WHATSAPP)
        if not number:
            raise DeliveryRefused("HELIOGRAPH_TWILIO_WHATSAPP_FROM is not set")
        return WHATSAPP + number
    raise DeliveryRefused(f"Twilio does not carry the channel {channel!r}")


def _recipient(message: OutboundMessage) -> str:
    return (WHATSAPP if message.channel == "whatsapp" else "") + message.recipient_id


async def _send_template(message: OutboundMessage, sender: str, template: Template) -> str:
    """Twilio sends WhatsApp templates as Content API templates, named by their HX... SID;
    the content template carries its own language, so every word after the SID is a value."""
    if not template.name.startswith("HX"):
        raise DeliveryRefused(
            "Twilio sends WhatsApp templates by their Content SID: /template HX... [VALUE ...] "
            f"({template.name!r} is not one)"
        )
    words = ([template.language] if template.language else []) + template.parameters
    variables = json.dumps({str(n): v for n, v in enumerate(words, 1)}) if words else values.unset
    return await _create(
        message, from_=sender, content_sid=template.name, content_variables=variables
    )


async def _create(message: OutboundMessage, **params: Any) -> str:
    settings = get_settings()
    client = await get_client()
    callback = (
        f"{settings.public_url.rstrip('/')}{STATUS_PATH}" if settings.public_url else values.unset
    )
    try:
        created = await asyncio.wait_for(
            client.messages.create_async(
                to=_recipient(message), status_callback=callback, **params
            ),
            settings.outbound_timeout_s,
        )
    except (TwilioRestException, TwilioServiceException) as exc:
        await _delivery_failed(exc, message)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryRetry(f"could not reach Twilio: {exc!r}") from exc
    return str(created.sid)


def _error_text(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioServiceException):
        return f"{exc.title}{': ' + exc.detail if exc.detail else ''}"
    return str(exc.msg).removeprefix("Unable to create record: ")


async def _delivery_failed(
    exc: TwilioRestException | TwilioServiceException, message: OutboundMessage
) -> NoReturn:
    status, code, text = int(exc.status), exc.code, _error_text(exc)
    if status == 429 or status >= 500:
        raise DeliveryRetry(f"Twilio answered {status}: {text}") from exc
    if code == UNSUBSCRIBED:
        # Twilio blocks the number itself after a STOP; mirror it so the agent sees why.
        async with get_db().session() as session:
            await set_opt_out(session, message.channel, message.recipient_id, True)
            await session.commit()
        raise DeliveryRefused(describe_error(code)) from exc
    raise DeliveryRefused(f"Twilio refused the message: error {code}: {text}") from exc


# --- the twilio Client, one per event loop and configuration ---------------------------------

_client: Client | None = None
_client_key: tuple[Any, ...] = ()


async def get_client() -> Client:
    """A Client on the aiohttp-based async HTTP client, its base URL the configured one."""
    global _client, _client_key
    settings = TwilioSettings.get()
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise DeliveryRefused("HELIOGRAPH_TWILIO_ACCOUNT_SID and _AUTH_TOKEN are not set")
    loop = asyncio.get_running_loop()
    key = (settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_api_base)
    if _client is not None and _client_key == (*key, loop):
        return _client
    await close_client()
    client = Client(key[0], key[1], http_client=AsyncTwilioHttpClient())
    client.api.base_url = settings.twilio_api_base.rstrip("/")
    _client, _client_key = client, (*key, loop)
    return client


async def close_client() -> None:
    global _client, _client_key
    if _client is not None and _client_key[-1] is asyncio.get_running_loop():
        await _client.http_client.close()  # type: ignore[attr-defined]
    _client, _client_key = None, ()


# --- media ------------------------------------------------------------------------------------


def _is_twilio_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    base = urlsplit(TwilioSettings.get().twilio_api_base).hostname
    return host == "twilio.com" or host.endswith(".twilio.com") or host == base


async def fetch_media(ref: MediaRef) -> FetchedMedia:
    """Media URLs need the account's credentials (basic auth) unless the account opted out;
    Twilio then redirects to its CDN, where httpx drops the credentials (another origin)."""
    account = TwilioSettings.get()
    if not ref.url:
        raise jobs.PermanentFailure("the attachment has no Twilio media URL")
    if not _is_twilio_host(ref.url):
        raise jobs.PermanentFailure(f"{ref.url} is not a Twilio URL: no credentials go there")
    auth = (account.twilio_account_sid, account.twilio_auth_token)
    try:
        async with httpx.AsyncClient(
            timeout=get_settings().outbound_timeout_s, follow_redirects=True
        ) as http:
            response = await http.get(ref.url, auth=auth)
    except httpx.HTTPError as exc:
        raise jobs.RetryLater(f"could not download the Twilio media: {exc!r}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise jobs.RetryLater(f"Twilio answered {response.status_code} for the media")
    if response.status_code >= 400:
        raise jobs.PermanentFailure(f"Twilio answered {response.status_code} for {ref.url}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip() or None
    return FetchedMedia(response.content, ref.content_type or content_type)


channel = TwilioChannel()
register(channel)  # the webhook adapter; conversations are on "sms" and "whatsapp"
register_sender("sms", channel.send)
register_fetcher("sms", fetch_media)
shutdown_hooks.append(close_client)
