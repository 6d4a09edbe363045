"""Slack (slack-bolt / slack-sdk): customers who write to the app in Slack.

A customer conversation is a direct message with the app (``message.im``) or a message
in a shared (Slack Connect) channel the app is in (``message.channels``,
``message.groups``, ``app_mention``). Each Slack channel is its own conversation
(``thread_key`` = channel id); the sender is ``{team_id}:{user_id}``.

Inbound, https://docs.slack.dev/apis/events-api/ : every request is verified here with
slack_sdk's ``SignatureVerifier`` *before* bolt sees it, so a bad or stale signature is a
403 like on every other channel (bolt's own answer would be 401). Events are stored by
``parse`` + ``inbox.intake.receive`` (channels/slack/routes.py) before the answer; bolt
then answers the url_verification challenge and acknowledges. Slash commands and
interactions go to bolt listeners only: ``listener_setups`` is where the lead commands
will plug in, ahead of the fallbacks that acknowledge and log.

The dedupe key of a message is ``{channel}:{ts}``, Slack's own identity for a message, so
a retry (``X-Slack-Retry-Num``), a repeated event_id, and the ``app_mention`` +
``message.channels`` pair Slack sends for one mention all store one row.

Outbound: ``chat.postMessage`` (https://docs.slack.dev/reference/methods/chat.postMessage).
Files an agent attached go with slack_sdk's ``files_upload_v2``
(https://docs.slack.dev/reference/methods/files.getUploadURLExternal, then
https://docs.slack.dev/reference/methods/files.completeUploadExternal), shared in the same
channel and thread, the text (its last part) as their ``initial_comment``.

The team's own Slack (surfaces/slack_threads.py posts there) is never a customer: the
inbox channel (``slack_inbox_channel``), our workspace's other channels, and an agent's
DM with the app that holds conversation threads. ``agent_dm_checks`` asks the agent side
about a DM during ``verify`` (it needs the database; ``parse`` is synchronous). Those
events go to the listeners of surfaces/slack_inbound.py, which act on them before
Slack gets its 200.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from channels import signatures
from channels.base import BadPayload, BadSignature, ChannelAdapter, WebhookRequest, register
from channels.slack.settings import SlackSettings
from crm_core.identity import SenderProfile
from heliograph.settings import get_settings
from inbox.attachments_out import SentFile
from inbox.edits import InboundEdit
from inbox.ingest import InboundMessage
from inbox.outbox import (
    DeliveryRefused,
    DeliveryResult,
    DeliveryRetry,
    OutboundMessage,
    delivery_progress,
    save_delivery_progress,
)

log = logging.getLogger(__name__)

SIGNATURE_WINDOW_S = 5 * 60  # Slack: reject a timestamp more than five minutes off
# Message subtypes a customer's own writing arrives with; the rest (joins, topic changes,
# message_deleted, bot_message, ...) are acknowledged and ignored.
CUSTOMER_SUBTYPES = {None, "thread_broadcast", "file_share"}
# Errors worth another try; everything else Slack answers with ``ok: false`` is final.
PASSING_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable"}
_LEADING_MENTION = re.compile(r"^\s*<@[A-Z0-9]+(\|[^>]*)?>[\s,:]*")

#: Functions that add listeners to the bolt app (the team-lead commands and actions plug in
#: here). They run before the fallbacks, so a specific listener wins over "acknowledge".
listener_setups: list[Callable[[AsyncApp], None]] = []
#: Functions that say whether a DM channel is an agent's (it holds conversation threads).
agent_dm_checks: list[Callable[[str], Awaitable[bool]]] = []
# The body whose event verify found in an agent's DM (parse, same request, reads it).
_agent_dm: ContextVar[bytes | None] = ContextVar("slack_agent_dm", default=None)


class SlackChannel(ChannelAdapter):
    name = "slack"
    # Slack truncates past 40,000 characters, but its guidance is to keep a message under
    # 4,000 for readability; 3,900 leaves room for the &amp;-escaping of the agent's text.
    max_text_length = 3_900

    def enabled(self) -> bool:
        settings = SlackSettings.get()
        return bool(settings.slack_bot_token and settings.slack_signing_secret)

    async def verify(self, request: WebhookRequest) -> None:
        """Signing secret and timestamp window, done here so a failure is 403 (bolt: 401)."""
        if not self.enabled():
            raise BadSignature(
                "Slack is not configured (HELIOGRAPH_SLACK_BOT_TOKEN and "
                "HELIOGRAPH_SLACK_SIGNING_SECRET), so nothing is accepted"
            )
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not timestamp.isdigit() or not signature:
            raise BadSignature("X-Slack-Request-Timestamp and X-Slack-Signature are required")
        if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_S:
            raise BadSignature("the request timestamp is more than 5 minutes off (a replay?)")
        verifier = SignatureVerifier(SlackSettings.get().slack_signing_secret)
        expected = verifier.generate_signature(timestamp=timestamp, body=request.body)
        if not signatures.matches(signature, expected):
            raise BadSignature("the X-Slack-Signature does not match the body")
        await _note_agent_dm(request)

    def parse(self, request: WebhookRequest) -> list[InboundMessage | InboundEdit]:
        body = request.json()
        if not isinstance(body, dict):
            raise BadPayload("the body must be a JSON object")
        if body.get("type") != "event_callback":
            return []  # url_verification (bolt answers it), app_rate_limited, ...
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise BadPayload("an event_callback needs an event object with a type")
        if event["type"] not in ("message", "app_mention") or not _customer_channel(body, event):
            return []
        if _agent_dm.get() == request.body:
            return []  # an agent's DM: the agent listeners act on it
        if event.get("subtype") == "message_changed":
            return _edit(event)
        if event.get("subtype") not in CUSTOMER_SUBTYPES or from_a_bot(body, event):
            return []
        return [self._message(body, event)]

    def _message(self, body: dict[str, Any], event: dict[str, Any]) -> InboundMessage:
        channel, ts, user = _required(event, "channel", "ts", "user")
        text = unescape(str(event.get("text") or ""))
        if event["type"] == "app_mention":
            text = _LEADING_MENTION.sub("", text, count=1)
        profile = event.get("user_profile")
        profile = profile if isinstance(profile, dict) else {}
        raw = {k: v for k, v in body.items() if k != "token"}  # the verification token
        return InboundMessage(
            channel=self.name,
            provider_message_id=f"{channel}:{ts}",
            sender=SenderProfile(
                channel=self.name,
                external_id=f"{body.get('team_id') or event.get('team') or '-'}:{user}",
                name=profile.get("real_name") or profile.get("display_name") or None,
            ),
            text=text,
            sent_at=_when(ts),
            thread_key=channel,
            raw=raw,
        )

    def check_command(self, request: WebhookRequest) -> dict[str, str]:
        """A slash command is a form with at least ``command`` (400 otherwise); Slack's
        ``ssl_check=1`` probe of the command URL goes through too (bolt answers it)."""
        form = _form(request.body)
        if not form.get("command") and form.get("ssl_check") != "1":
            raise BadPayload("a slash command needs a command field")
        return form

    def check_interaction(self, request: WebhookRequest) -> dict[str, Any]:
        """An interaction is a form whose ``payload`` is a JSON object with a type."""
        field = _form(request.body).get("payload", "").encode()
        payload = replace(request, body=field).json()  # parsed as a body is: bounded
        if not isinstance(payload, dict) or not payload.get("type"):
            raise BadPayload("an interaction needs a payload JSON object with a type")
        return payload

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        if not self.enabled():
            raise DeliveryRefused("Slack is not configured (HELIOGRAPH_SLACK_BOT_TOKEN)")
        client = web_client()
        parts = self.split_text(message.text)
        # Where this reply goes is fixed at its first part, and every posted part is noted
        # (committed) before the next: a retry after a failure half-way resumes after the
        # last part that went out. Only a crash between Slack's answer and that commit can
        # repeat one part (Slack has no idempotency key for chat.postMessage).
        progress = (await delivery_progress(message.message_id)).get("slack") or {}
        if not progress:
            channel, thread_ts = await _reply_target(client, message)
            progress = {"channel": channel, "thread_ts": thread_ts, "parts": []}
        # With attachments, the last part of the text introduces the files (their
        # ``initial_comment``): the answer and its files arrive as one Slack message.
        text_parts = parts[:-1] if message.attachments else parts
        posted: list[str] = list(progress["parts"])
        for part in text_parts[len(posted) :]:
            posted.append(await _post(client, progress["channel"], part, progress["thread_ts"]))
            progress = {**progress, "parts": posted, "of": len(text_parts)}
            await save_delivery_progress(message.message_id, {"slack": progress})
        if message.attachments and "shared" not in progress:
            comment = parts[-1].strip() if parts else ""
            shared = await _share_files(
                client, progress["channel"], progress["thread_ts"], message.attachments, comment
            )
            progress = {**progress, "shared": shared}
            await save_delivery_progress(message.message_id, {"slack": progress})
        first = posted[0] if posted else progress["shared"]
        return DeliveryResult(external_id=f"{progress['channel']}:{first}", status="delivered")


# --- inbound helpers -----------------------------------------------------------------


def _customer_channel(body: dict[str, Any], event: dict[str, Any]) -> bool:
    """A DM with the app, or a channel shared with another organisation.

    Slack says ``is_ext_shared_channel: false`` for our own workspace's channels: those are
    where the team works (and where conversations will be mirrored to agents), never a
    customer's voice. When the flag is absent (older payloads) the channel is taken as
    shared, since the app is only invited to customer channels.
    """
    inbox = SlackSettings.get().slack_inbox_channel
    if inbox and event.get("channel") == inbox:
        return False
    if event.get("channel_type") == "im":
        return True
    return body.get("is_ext_shared_channel") is not False


async def _note_agent_dm(request: WebhookRequest) -> None:
    """Remember (for ``parse``) that this event happened in an agent's DM with the app."""
    _agent_dm.set(None)
    if not agent_dm_checks or b'"im"' not in request.body:
        return
    try:
        body = request.json()
    except BadPayload:
        return  # parse says why
    event = body.get("event") if isinstance(body, dict) else None
    if not isinstance(event, dict) or event.get("channel_type") != "im":
        return
    channel = event.get("channel")
    if isinstance(channel, str) and channel:
        for check in agent_dm_checks:
            if await check(channel):
                _agent_dm.set(request.body)
                return


def from_a_bot(body: dict[str, Any], event: dict[str, Any]) -> bool:
    """Our own posts (and any other app's) come back as events; they are not a customer."""
    if event.get("bot_id") or event.get("subtype") == "bot_message":
        return True
    bots = {
        a.get("user_id")
        for a in body.get("authorizations") or []
        if isinstance(a, dict) and a.get("is_bot")
    }
    return event.get("user") in bots


def _edit(event: dict[str, Any]) -> list[InboundMessage | InboundEdit]:
    changed = event.get("message")
    if not isinstance(changed, dict) or changed.get("bot_id"):
        return []
    channel = event.get("channel")
    ts = changed.get("ts")
    if not channel or not ts:
        raise BadPayload("a message_changed event needs channel and message.ts")
    edited = changed.get("edited") or {}
    return [
        InboundEdit(
            channel="slack",
            provider_message_id=f"{channel}:{ts}",
            text=unescape(str(changed.get("text") or "")),
            edited_at=_when(str(edited.get("ts") or event.get("ts") or "")),
        )
    ]


def _required(event: dict[str, Any], *names: str) -> list[str]:
    values = [event.get(n) for n in names]
    missing = [n for n, v in zip(names, values, strict=True) if not isinstance(v, str) or not v]
    if missing:
        raise BadPayload(f"a {event['type']} event needs {', '.join(missing)}")
    return [str(v) for v in values]


def _when(ts: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def unescape(text: str) -> str:
    """Slack escapes exactly these three in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Slack's three escapes (https://docs.slack.dev/messaging/formatting-message-text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPayload(f"the body is not a url-encoded form: {exc}") from exc
    return {k: v[0] for k, v in pairs.items()}


# --- outbound helpers ----------------------------------------------------------------


async def _reply_target(client: AsyncWebClient, message: OutboundMessage) -> tuple[str, str | None]:
    """The channel, and the thread to answer in, from the customer's latest event.

    In a shared channel the answer goes in a thread under the customer's message (or in
    the thread they wrote in): a busy channel stays readable and the answer sits with the
    question. In a DM a thread only where the customer used one; otherwise the plain chat.
    """
    event = (message.reply_context or {}).get("event") or {}
    channel = str(event.get("channel") or message.thread_key or "")
    if not channel:  # no Slack event to answer: open (or find) the DM with the person
        user = message.recipient_id.rsplit(":", 1)[-1]
        opened = await api_call(client.conversations_open, users=user)
        return str(opened["channel"]["id"]), None
    if event.get("thread_ts"):
        return channel, str(event["thread_ts"])
    is_dm = event.get("channel_type") == "im" or channel.startswith("D")
    return channel, (None if is_dm or not event.get("ts") else str(event["ts"]))


async def _post(client: AsyncWebClient, channel: str, text: str, thread_ts: str | None) -> str:
    args: dict[str, Any] = {"channel": channel, "text": escape(text)}
    if thread_ts:
        args["thread_ts"] = thread_ts
    response = await api_call(client.chat_postMessage, **args)
    return str(response["ts"])


async def _share_files(
    client: AsyncWebClient,
    channel: str,
    thread_ts: str | None,
    files: Sequence[SentFile],
    comment: str,
) -> str:
    """Upload the files and share them in one message (``files_upload_v2``: per file
    ``files.getUploadURLExternal`` and a POST of its bytes, then one
    ``files.completeUploadExternal`` with the channel, thread and ``initial_comment``).

    Slack discards uploads that are never completed, so a retry after a failure before the
    completion uploads afresh and the customer still sees each file once. Returns the ts of
    the message that shows them where Slack says it, else the first file's id.
    """
    uploads = []
    for f in files:
        try:
            data = await asyncio.to_thread(f.read)
        except OSError as exc:
            raise DeliveryRefused(f"{f.filename} is no longer stored: {exc}") from exc
        uploads.append({"file": data, "filename": f.filename, "title": f.filename})
    args: dict[str, Any] = {"file_uploads": uploads, "channel": channel}
    if comment:
        args["initial_comment"] = escape(comment)
    if thread_ts:
        args["thread_ts"] = thread_ts
    response = await api_call(client.files_upload_v2, **args)
    shared = response.get("files") or [{}]
    for where in (shared[0].get("shares") or {}).values():
        for share in where.get(channel) or []:
            if share.get("ts"):
                return str(share["ts"])
    return str(shared[0].get("id") or "files")


async def api_call(method: Callable[..., Any], **args: Any) -> Any:
    """One Web API call; Slack's failures as DeliveryRetry (passing) or DeliveryRefused."""
    try:
        return await method(**args)
    except SlackApiError as exc:
        raise _classify(exc) from exc
    except SlackRequestError as exc:  # an upload URL that did not answer 200
        raise DeliveryRetry(f"Slack did not take the file: {exc}") from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryRetry(f"could not reach Slack: {exc!r}") from exc


def _classify(exc: SlackApiError) -> Exception:
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    if status == 429 or error == "ratelimited":
        retry_after = str(headers.get("retry-after", ""))
        delay = float(retry_after) if retry_after.isdigit() else None
        return DeliveryRetry(f"Slack rate-limited the reply (retry after {retry_after}s)", delay)
    if status >= 500 or error in PASSING_ERRORS:
        return DeliveryRetry(f"Slack answered {status} {error or ''}".strip())
    return DeliveryRefused(f"Slack refused the reply: {error or f'HTTP {status}'}")


# --- the bolt app and Web API client, rebuilt when the settings change ----------------


@dataclass(frozen=True)
class _Config:
    token: str
    signing_secret: str
    api_base: str
    timeout_s: float


_built: dict[tuple[_Config, tuple[Any, ...]], tuple[AsyncApp, AsyncWebClient]] = {}


def _config() -> _Config:
    s = SlackSettings.get()
    base = s.slack_api_base if s.slack_api_base.endswith("/") else s.slack_api_base + "/"
    timeout = get_settings().outbound_timeout_s
    return _Config(s.slack_bot_token, s.slack_signing_secret, base, timeout)


def _build() -> tuple[AsyncApp, AsyncWebClient]:
    config = _config()
    key = (config, tuple(listener_setups))
    if key not in _built:
        _built.clear()  # the settings (or listeners) changed: start over
        client = AsyncWebClient(
            token=config.token, base_url=config.api_base, timeout=int(max(config.timeout_s, 1))
        )
        _built[key] = (_bolt(config, client), client)
    return _built[key]


def bolt_app() -> AsyncApp:
    return _build()[0]


def web_client() -> AsyncWebClient:
    return _build()[1]


def _bolt(config: _Config, client: AsyncWebClient) -> AsyncApp:
    identity: dict[str, Any] = {}
    failed_at = [0.0]

    async def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        # The bot's own ids come from auth.test, asked once; when Slack's Web API is down,
        # events are still acknowledged (they are stored already) and asked again later.
        if not identity and time.monotonic() - failed_at[0] > 60:
            try:
                identity.update((await client.auth_test()).data)  # type: ignore[arg-type]
            except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                failed_at[0] = time.monotonic()
                log.warning("Slack auth.test failed (%s); continuing without the bot's ids", exc)
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or identity.get("team_id"),
            user_id=user_id,
            bot_token=config.token,
            bot_id=identity.get("bot_id"),
            bot_user_id=identity.get("user_id"),
        )

    app = AsyncApp(
        # Bolt checks the signature again (defence in depth); ours ran first and answers 403.
        signing_secret=config.signing_secret,
        # Bolt's listeners get a client with the token ``authorize`` returns.
        client=AsyncWebClient(base_url=config.api_base, timeout=client.timeout),
        authorize=authorize,
        process_before_response=True,  # listeners finish before Slack gets its answer
        logger=log,
    )
    for setup in listener_setups:
        setup(app)
    _fallbacks(app)
    return app


def _fallbacks(app: AsyncApp) -> None:
    anything = re.compile(".*")

    @app.event(anything)
    async def event_stored_already() -> None:
        """Customer messages were stored before bolt saw the request; bolt acknowledges."""

    @app.command(anything)
    async def command_not_yet(ack: Any, command: dict[str, Any]) -> None:
        log.info(
            "Slack command %s from %s in %s acknowledged; nothing handles it yet",
            command.get("command"),
            command.get("user_id"),
            command.get("channel_id"),
        )
        await ack(f"Heliograph cannot do {command.get('command')} yet.")

    @app.action(anything)
    @app.shortcut(anything)
    @app.view(anything)
    async def interaction_not_yet(ack: Any, body: dict[str, Any]) -> None:
        user = body.get("user") or {}
        log.info(
            "Slack %s from %s acknowledged; nothing handles it yet",
            body.get("type"),
            user.get("id") if isinstance(user, dict) else user,
        )
        await ack()


adapter = SlackChannel()
register(adapter)
