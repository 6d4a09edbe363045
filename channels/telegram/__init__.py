"""Telegram through aiogram 3: webhook or long polling in, Bot API ``sendMessage`` out.

- Inbound: ``POST /webhooks/telegram``, checked against ``X-Telegram-Bot-Api-Secret-Token``
  (the ``secret_token`` we give ``setWebhook``; https://core.telegram.org/bots/api#setwebhook),
  parsed with aiogram's own ``Update`` model. Private chats only: the chat is the customer,
  unless it is linked to a team member (or is an unlinked chat's ``/link`` or exec
  command): those go to the ``diverters`` (surfaces/telegram_agents.py) instead.
  Text, captions, edits, photos, documents, voice and audio notes, videos; every other
  update (callbacks, channel posts, reactions, ...) is acknowledged and ignored.
- Long polling (``heliograph serve --telegram-polling``) feeds the same parse path and the
  same intake (``inbox.intake.receive``).
- Outbound: ``sendMessage`` through aiogram's ``Bot`` pointed at HELIOGRAPH_TELEGRAM_API_BASE,
  split at 4,096 characters, each part's success recorded before the next is sent;
  ``send_text`` is the same path for the team's chats (one message, optionally a reply).
- Media: ``getFile`` + download through the same API base (``attachment.fetch`` jobs).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, NoReturn

from pydantic import ValidationError

from channels import signatures
from channels.base import (
    BadSignature,
    ChannelAdapter,
    InvalidFields,
    WebhookError,
    WebhookRequest,
    register,
    shutdown_hooks,
    startup_hooks,
)
from channels.telegram import lean
from channels.telegram.settings import TelegramSettings
from crm_core.identity import SenderProfile, mark_unreachable
from heliograph import jobs
from heliograph.db import get_db
from heliograph.settings import get_settings
from inbox import intake
from inbox.attachments_out import SentFile
from inbox.edits import InboundEdit
from inbox.ingest import InboundAttachment, InboundMessage
from inbox.media import FetchedMedia, MediaRef, register_fetcher
from inbox.outbox import (
    DeliveryRefused,
    DeliveryResult,
    DeliveryRetry,
    OutboundMessage,
    send_with_files,
)

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "edited_message"]  # all we act on; setWebhook / getUpdates filter
POLL_TIMEOUT_S = 25  # long-polling wait per getUpdates call (Telegram allows up to 50)

Item = InboundMessage | InboundEdit


def _readable(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
    ]
    return "; ".join(f"{e['field']}: {e['problem']}" for e in errors), errors


def _clean(text: str | None) -> str:
    # PostgreSQL text cannot hold U+0000; dropping it keeps the message (a 4xx would make
    # Telegram redeliver the update again and again, a 5xx too).
    return (text or "").replace("\x00", "")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _external_id(chat_id: int | str, message_id: int) -> str:
    # Telegram numbers messages per chat, so only the pair is unique on the channel.
    return f"{chat_id}:{message_id}"


def _file(
    kind: str, file: Any, content_type: str | None, filename: str | None = None
) -> InboundAttachment:
    return InboundAttachment(
        kind=kind,
        content_type=content_type,
        filename=_clean(filename) or None,
        size=file.file_size,
        provider_file_id=file.file_id,
    )


def _attachments(msg: lean.Message) -> list[InboundAttachment]:
    found: list[InboundAttachment] = []
    if msg.photo:
        # One photo arrives in several sizes (https://core.telegram.org/bots/api#photosize).
        found.append(_file("image", max(msg.photo, key=lambda p: p.width * p.height), "image/jpeg"))
    if msg.document:
        doc = msg.document
        found.append(_file("file", doc, doc.mime_type, doc.file_name))
    if msg.voice:
        found.append(_file("audio", msg.voice, msg.voice.mime_type or "audio/ogg"))
    if msg.audio:
        found.append(_file("audio", msg.audio, msg.audio.mime_type, msg.audio.file_name))
    if msg.video:
        found.append(_file("video", msg.video, msg.video.mime_type, msg.video.file_name))
    if msg.video_note:
        found.append(_file("video", msg.video_note, "video/mp4"))
    return found


def _update(data: dict[str, Any]) -> lean.Update:
    try:
        return lean.Update.model_validate(data)
    except ValidationError as exc:
        message, errors = _readable(exc)
        raise InvalidFields(f"not a valid Telegram Update: {message}", errors) from exc


# A private chat is a customer's unless a diverter takes it: the team's own surface
# (surfaces/telegram_agents.py) takes the chats linked to team members and an unlinked
# chat's /link and exec commands. A diverter commits what it did before it returns True.
Diverter = Callable[["lean.Update"], Awaitable[bool]]
diverters: list[Diverter] = []


async def divert(data: dict[str, Any]) -> bool:
    """True when the update was the team's, not a customer's (and is handled, committed)."""
    if not diverters:
        return False
    update = _update(data)
    msg = update.message or update.edited_message
    if msg is None or not _from_customer(msg):
        return False
    for diverter in diverters:
        if await diverter(update):
            return True
    return False


def _from_customer(msg: lean.Message) -> bool:
    """A person writing to the bot in a private chat (groups and channels are not customers)."""
    return msg.chat.type == "private" and msg.from_user is not None and not msg.from_user.is_bot


class TelegramChannel(ChannelAdapter):
    name = "telegram"
    max_text_length = 4096  # https://core.telegram.org/bots/api#sendmessage

    def enabled(self) -> bool:
        return bool(TelegramSettings.get().telegram_bot_token)

    async def verify(self, request: WebhookRequest) -> None:
        settings = TelegramSettings.get()
        if not settings.telegram_bot_token:
            raise BadSignature("the Telegram channel is off (HELIOGRAPH_TELEGRAM_BOT_TOKEN unset)")
        secret = settings.telegram_webhook_secret
        if not secret:
            raise BadSignature(
                "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET is not set, so no Telegram update is accepted"
            )
        given = request.headers.get(SECRET_HEADER)
        if not given:
            raise BadSignature(f"the {SECRET_HEADER} header is missing")
        if not signatures.matches(given, secret):
            raise BadSignature(f"the {SECRET_HEADER} header does not match our webhook secret")

    def parse(self, request: WebhookRequest) -> list[Item]:
        data = request.json()
        if not isinstance(data, dict):
            raise InvalidFields("the body must be a JSON object (a Telegram Update)")
        return self.parse_update(data)

    def parse_update(self, data: dict[str, Any]) -> list[Item]:
        """One Update as messages and edits; ``[]`` for the kinds we deliberately ignore."""
        update = _update(data)
        if update.message is not None and _from_customer(update.message):
            return self._message(update.message, data)
        if update.edited_message is not None and _from_customer(update.edited_message):
            return self._edit(update.edited_message)
        return []

    def _message(self, msg: lean.Message, raw: dict[str, Any]) -> list[Item]:
        user = msg.from_user
        assert user is not None
        attachments = _attachments(msg)
        text = _clean(msg.text or msg.caption)
        if not text and not attachments:
            return []  # stickers, polls, service messages (pins, joins): nothing to keep
        name = " ".join(_clean(p) for p in (user.first_name, user.last_name) if p)
        return [
            InboundMessage(
                channel=self.name,
                provider_message_id=_external_id(msg.chat.id, msg.message_id),
                sender=SenderProfile(
                    channel=self.name,
                    external_id=str(msg.chat.id),
                    name=name or _clean(user.username) or None,
                    language=_clean(user.language_code) or None,
                ),
                text=text,
                sent_at=msg.date,
                attachments=attachments,
                raw=raw,
            )
        ]

    def _edit(self, msg: lean.Message) -> list[Item]:
        if msg.text is None and msg.caption is None:
            return []  # the media itself was replaced: no text to update
        return [
            InboundEdit(
                channel=self.name,
                provider_message_id=_external_id(msg.chat.id, msg.message_id),
                text=_clean(msg.text or msg.caption),
                # aiogram types edit_date as unix time (date as a datetime)
                edited_at=datetime.fromtimestamp(msg.edit_date, UTC) if msg.edit_date else None,
            )
        ]

    def split_text(self, text: str) -> list[str]:
        """The base split, then any part still over 4,096 UTF-16 code units cut again:
        Telegram measures text in UTF-16 units (MessageEntity offsets), so an emoji-heavy
        part that fits by Python's count might not fit by Telegram's."""
        parts: list[str] = []
        for part in super().split_text(text):
            while _utf16_len(part) > self.max_text_length:
                cut = self.max_text_length // 2
                while _utf16_len(part[: cut + 1]) <= self.max_text_length:
                    cut += 1
                parts.append(part[:cut])
                part = part[cut:]
            parts.append(part)
        return parts

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """A long reply is several ``sendMessage`` calls; parts already sent are never sent
        again (``ChannelAdapter.send_in_parts``)."""
        bot = await get_bot()

        async def send_part(part: str) -> str:
            try:
                result = await bot.send_message(chat_id=message.recipient_id, text=part)
            except lean.AiogramError as exc:
                await _delivery_failed(exc, message.recipient_id)
            return _external_id(result.chat.id, result.message_id)

        if message.attachments:
            return await send_with_files(
                message,
                lambda: self.send_in_parts(message, send_part),
                lambda f: _send_file(bot, message.recipient_id, f),
            )
        return await self.send_in_parts(message, send_part)


async def _send_file(bot: lean.Bot, chat_id: str, sent: SentFile) -> str:
    """``sendPhoto`` for an image Telegram shows as a photo, else ``sendDocument`` (the
    file uploaded as multipart, aiogram ``BufferedInputFile``)."""
    upload = lean.BufferedInputFile(sent.read(), filename=sent.filename)
    try:
        if sent.kind == "image":
            result = await bot.send_photo(chat_id=chat_id, photo=upload)
        else:
            result = await bot.send_document(chat_id=chat_id, document=upload)
    except lean.AiogramError as exc:
        await _delivery_failed(exc, chat_id)
    return _external_id(result.chat.id, result.message_id)


async def send_text(chat_id: str, text: str, reply_to_message_id: int | None = None) -> int:
    """One ``sendMessage`` (at most 4,096 characters) for the team's chats; the message_id.

    Raises ``DeliveryRetry`` (a 429 carries its ``retry_after``) or ``DeliveryRefused``, so
    a job that calls it retries or gives up as the outbox does."""
    bot = await get_bot()
    try:
        reply = None
        if reply_to_message_id is not None:  # sent even if that message was deleted since
            reply = lean.ReplyParameters(
                message_id=reply_to_message_id, allow_sending_without_reply=True
            )
        result = await bot.send_message(chat_id=chat_id, text=text, reply_parameters=reply)
    except lean.AiogramError as exc:
        await _delivery_failed(exc, chat_id)
    return result.message_id


async def _delivery_failed(exc: lean.AiogramError, recipient_id: str) -> NoReturn:
    """Map aiogram's errors (https://core.telegram.org/bots/api#making-requests) to the outbox's."""
    if isinstance(exc, lean.TelegramRetryAfter):
        raise DeliveryRetry(f"telegram: {exc.message}", float(exc.retry_after)) from exc
    if isinstance(exc, lean.TelegramForbiddenError):
        # "Forbidden: bot was blocked by the user", "user is deactivated", ...: retrying
        # cannot help until they write again, so the identity is marked unreachable.
        async with get_db().session() as session:
            await mark_unreachable(session, "telegram", recipient_id, exc.message)
            await session.commit()
        raise DeliveryRefused(f"telegram refused: {exc.message}") from exc
    if isinstance(exc, lean.TelegramEntityTooLarge):
        raise DeliveryRefused(f"telegram refused: {exc.message}") from exc
    if isinstance(exc, lean.TelegramNetworkError | lean.TelegramServerError):
        raise DeliveryRetry(f"telegram unavailable: {exc.message}") from exc
    if isinstance(exc, lean.TelegramAPIError):  # 400 "chat not found", 401 bad token, ...
        raise DeliveryRefused(f"telegram refused: {exc}") from exc
    raise DeliveryRetry(f"telegram answered something unreadable: {exc}") from exc


# --- the aiogram Bot, one per event loop and configuration ------------------------------

_bot: lean.Bot | None = None
_bot_key: tuple[Any, ...] = ()


async def get_bot() -> lean.Bot:
    """The Bot for the current settings; its HTTP session belongs to the running loop."""
    global _bot, _bot_key
    settings = TelegramSettings.get()
    timeout = get_settings().outbound_timeout_s
    if not settings.telegram_bot_token:
        raise DeliveryRefused("HELIOGRAPH_TELEGRAM_BOT_TOKEN is not set")
    loop = asyncio.get_running_loop()
    key = (settings.telegram_bot_token, settings.telegram_api_base, timeout)
    if _bot is not None and _bot_key == (*key, loop):
        return _bot
    if _bot is not None and _bot_key[-1] is loop:
        await _bot.session.close()  # settings changed: the old session is ours to close
    session = lean.AiohttpSession(
        api=lean.TelegramAPIServer.from_base(settings.telegram_api_base),
        timeout=timeout,
    )
    try:
        _bot = lean.Bot(settings.telegram_bot_token, session=session)
    except lean.TokenValidationError as exc:
        raise DeliveryRefused(f"HELIOGRAPH_TELEGRAM_BOT_TOKEN is not a bot token: {exc}") from exc
    _bot_key = (*key, loop)
    return _bot


async def close_bot() -> None:
    global _bot, _bot_key
    if _bot is not None and _bot_key[-1] is asyncio.get_running_loop():
        await _bot.session.close()
    _bot, _bot_key = None, ()


# --- media --------------------------------------------------------------------------------


async def fetch_media(ref: MediaRef) -> FetchedMedia:
    """``getFile`` then download (https://core.telegram.org/bots/api#getfile)."""
    if not ref.provider_file_id:
        raise jobs.PermanentFailure("the attachment has no Telegram file_id")
    bot = await get_bot()
    try:
        file = await bot.get_file(ref.provider_file_id)
        if not file.file_path:
            raise jobs.RetryLater("telegram gave no file_path yet")
        data = await bot.download_file(
            file.file_path, timeout=int(get_settings().outbound_timeout_s)
        )
    except lean.TelegramRetryAfter as exc:
        raise jobs.RetryLater(f"telegram: {exc.message}", float(exc.retry_after)) from exc
    except lean.TelegramBadRequest as exc:  # "invalid file_id", "file is too big" (over 20 MB)
        raise jobs.PermanentFailure(f"telegram refused the file: {exc.message}") from exc
    except (lean.AiogramError, OSError, TimeoutError) as exc:  # the link may be stale: ask again
        raise jobs.RetryLater(f"could not download the Telegram file: {exc!r}") from exc
    assert isinstance(data, io.BytesIO)
    return FetchedMedia(data.getvalue(), ref.content_type, PurePosixPath(file.file_path).name)


# --- start-up: setWebhook, or long polling ------------------------------------------------

channel = TelegramChannel()
_tasks: set[asyncio.Task[Any]] = set()


async def _with_retries(what: str, call: Callable[[], Awaitable[Any]], tries: int) -> bool:
    for attempt in range(tries):
        try:
            await call()
            return True
        except lean.TelegramBadRequest as exc:  # e.g. "An HTTPS URL must be provided for webhook"
            log.error("Telegram %s was refused: %s", what, exc.message)
            return False
        except DeliveryRefused as exc:  # no usable token: nothing to retry
            log.error("Telegram %s impossible: %s", what, exc)
            return False
        except lean.TelegramRetryAfter as exc:
            delay: float = exc.retry_after
        except (lean.AiogramError, OSError) as exc:
            log.warning("Telegram %s failed (%s); try %d of %d", what, exc, attempt + 1, tries)
            delay = min(2.0**attempt, 30.0)
        await asyncio.sleep(delay)
    log.error("Telegram %s failed %d times; giving up", what, tries)
    return False


async def set_webhook(tries: int = 6) -> bool:
    """Point Telegram at ``{HELIOGRAPH_PUBLIC_URL}/webhooks/telegram`` with our secret."""
    settings = TelegramSettings.get()
    if not settings.telegram_webhook_secret:
        log.error("not calling setWebhook: HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET is not set")
        return False
    url = f"{get_settings().public_url.rstrip('/')}/webhooks/telegram"

    async def call() -> None:
        bot = await get_bot()
        await bot.set_webhook(
            url=url, secret_token=settings.telegram_webhook_secret, allowed_updates=ALLOWED_UPDATES
        )

    done = await _with_retries(f"setWebhook {url}", call, tries)
    if done:
        log.info("Telegram webhook set to %s", url)
    return done


async def _delete_webhook() -> None:
    await (await get_bot()).delete_webhook(drop_pending_updates=False)


async def poll_updates() -> None:
    """getUpdates until cancelled. The offset (Telegram's acknowledgement) only moves past
    an update once it is committed, so a crash means a redelivery, and dedupe absorbs it."""
    await _with_retries("deleteWebhook", _delete_webhook, tries=3)  # else getUpdates is 409
    offset: int | None = None
    delay = 1.0
    while True:
        try:
            bot = await get_bot()
            updates = await bot.get_updates(
                offset=offset,
                timeout=POLL_TIMEOUT_S,
                allowed_updates=ALLOWED_UPDATES,
                request_timeout=POLL_TIMEOUT_S + 10,
            )
            for update in updates:
                offset = await _take(update)
            delay = 1.0
            continue
        except lean.TelegramRetryAfter as exc:
            await asyncio.sleep(exc.retry_after)
            continue
        except lean.TelegramConflictError as exc:  # a webhook is set again, or another poller runs
            log.error("Telegram polling conflict: %s", exc.message)
            await _with_retries("deleteWebhook", _delete_webhook, tries=1)
        except Exception:  # the API or the database is away: keep the loop alive
            log.exception("Telegram polling failed; again in %.0f s", delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def _take(update: lean.Update) -> int:
    """Store one polled update through the intake; returns the next offset. A failed commit
    (``CommitFailed``) propagates: the offset stays, and the poller fetches it again."""
    data = update.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        if await divert(data):
            return update.update_id + 1
        items = channel.parse_update(data)
    except WebhookError as exc:  # the provider's own data: retrying cannot fix it
        log.error("skipping Telegram update %s: %s", update.update_id, exc)
        return update.update_id + 1
    await intake.receive(items)
    return update.update_id + 1


def _start(coro: Coroutine[Any, Any, Any], name: str) -> None:
    task = asyncio.create_task(coro, name=name)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _on_startup() -> None:
    settings = TelegramSettings.get()
    if not settings.telegram_bot_token:
        return
    lean.load()  # now, not in the first webhook's request
    if settings.telegram_polling:
        _start(poll_updates(), "telegram-polling")
    elif get_settings().public_url:
        # In the background, so a slow or absent Bot API never holds up start-up.
        _start(set_webhook(), "telegram-set-webhook")


async def _on_shutdown() -> None:
    tasks = list(_tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await close_bot()


register(channel)
register_fetcher(channel.name, fetch_media)
startup_hooks.append(_on_startup)
shutdown_hooks.append(_on_shutdown)
