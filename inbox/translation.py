"""Languages and translation in the inbox: detect, translate for agents, translate replies.

Which column holds what. When a message is translated, ``original_text`` keeps the
author's own words and ``original_language`` their language, and ``text`` holds the
translation for whoever reads it: agents for an inbound message, the customer for a reply
(the outbox sends ``text``). Untranslated, ``text`` is the author's words and
``original_text`` stays empty. So the author's words are always
``original_text if original_text is not None else text`` (``words()``), and every surface
that shows ``text`` (Slack, Telegram, the web inbox, routing's topic keywords) reads the
agent's language without knowing about translation. A failed translation never touches
``text``: the original stays visible, ``translation_status`` says "failed" and why, and
the job retries with backoff.

Replies. ``inbox.conversations.reply`` calls ``prepare_reply`` in its transaction: when
the customer's language is not one the author reads, the reply is marked "pending" and a
``reply.translate`` job is queued next to the delivery job. Delivery defers while the
translation is pending (``hold_reply``), for at most ``translation_reply_wait_s``; after
that the reply goes out as written, and the agent gets a private note saying so. Whichever
of the two settles a pending reply first wins (conditional updates), so a late
translation never rewrites a reply that has already been sent.

Who reads what: the assigned agent's languages (``TeamMember.languages``, registered by
routing through ``register_reader_languages``; inbox cannot import routing), else the
team's ``translation_agent_languages``. The first of them is the target language.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import reads as crm_reads
from crm_core.identity import get_customer
from heliograph import jobs
from heliograph.db import get_db, utcnow
from heliograph.settings import Settings, get_settings
from inbox import reads as inbox_reads
from inbox.bus import (
    MESSAGE_EDITED,
    MESSAGE_RECEIVED,
    MESSAGE_TRANSLATED,
    TRANSLATE_MESSAGE,
    TRANSLATE_REPLY,
    MessageRef,
    MessageTranslated,
    deliver_key,
    pages_changed,
    translate_reply_key,
)
from inbox.models import Conversation, Message, Note
from transcription import cache, language, shared_detector
from transcription.translate import (
    ProviderConfig,
    TranslationError,
    TranslationRefused,
    translate,
)

log = logging.getLogger(__name__)

VOICE_MARK = "🎤 "  # begins a line the voice job wrote from a transcript (inbox/voice.py)
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
# A conversation's language is set, or moved to a newly detected one, only by a message
# this long: "ok", "merci!" or a name are no reason to answer in another language.
SWITCH_MIN_LETTERS = 12

ReaderLanguages = Callable[[AsyncSession, int], Awaitable[list[str]]]
_reader_languages: ReaderLanguages | None = None

jobs.subscribe(MESSAGE_RECEIVED, TRANSLATE_MESSAGE)
jobs.subscribe(MESSAGE_EDITED, TRANSLATE_MESSAGE)


class InvalidLanguage(ValueError):
    pass


def register_reader_languages(fn: ReaderLanguages | None) -> None:
    """Routing tells the inbox which languages a team member reads (``member_id`` -> codes);
    None forgets it (every reader then reads the team's default language)."""
    global _reader_languages
    _reader_languages = fn


def provider_config(settings: Settings | None = None) -> ProviderConfig:
    s = settings or get_settings()
    return ProviderConfig(
        provider=s.translation_provider,
        url=s.translation_url,
        api_key=s.translation_api_key,
        api_secret=s.translation_api_secret,
        options=dict(s.translation_options),
        timeout_s=s.translation_timeout_s,
    )


def provider_chosen(settings: Settings | None = None) -> bool:
    """Whether the operator named a translation provider ("none", the default, is off)."""
    return (settings or get_settings()).translation_provider.strip().lower() not in ("", "none")


def words(message: Message) -> str:
    """What the author wrote (or said), whatever translation did to ``text``."""
    return message.original_text if message.original_text is not None else message.text


async def reader_languages(session: AsyncSession, member_id: int | None) -> list[str]:
    if member_id is not None and _reader_languages is not None:
        found = [c.lower() for c in await _reader_languages(session, member_id) if c]
        if found:
            return found
    return [c.lower() for c in get_settings().translation_agent_languages] or ["en"]


async def translate_cached(
    text: str, source: str, target: str, *, uses: list[cache.Use] | None = None
) -> tuple[str, bool]:
    """``(translation, from_cache)``; voice lines keep their mark, the rest is translated.
    With ``uses``, the cache is only read here: the hit to count or the translation to keep
    is added to ``uses``, for the caller to write in its own transaction (``cache.record``:
    the inbound batch writes them with its messages, two write transactions fewer per
    translated message); without it, each is written here in a transaction of its own."""
    config = provider_config()
    mark = VOICE_MARK if text.startswith(VOICE_MARK) else ""
    body = text[len(mark) :]

    async def keep(use: cache.Use) -> None:
        if uses is not None:
            uses.append(use)
            return
        async with get_db().session() as session:
            await cache.record(session, [use])
            await session.commit()

    key = (config.provider, source, target, body)
    async with get_db().read_session() as session:
        hit = await cache.find(session, *key)
    if hit is None:  # made for the caller meanwhile, not stored yet (the same words twice)
        hit = next((u.translated for u in uses or () if u.translated and u.key == key), None)
    # No await from here to taking the key: a translation of the caller's batch that
    # finished meanwhile is in ``uses`` or still in flight, never in neither.
    pending = _in_flight.get(key)
    if hit is None and pending is not None:
        # The same text is being translated right now: wait for it, a cache hit.
        hit = await asyncio.shield(pending)
    if hit is not None:
        await keep(cache.Use(*key))
        return mark + hit, True
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
    _in_flight[key] = future
    try:
        translated = await translate(config, body, source, target)
        await keep(cache.Use(*key, translated=translated))
    except BaseException as exc:
        future.set_exception(exc)
        raise
    finally:
        _in_flight.pop(key, None)
    future.set_result(translated)
    return mark + translated, False


# Translations being made in this process, by (provider, source, target, text): a batch
# holding the same text twice (a campaign's answers) asks the provider once.
_in_flight: dict[tuple[str, str, str, str], asyncio.Future[str]] = {}


def _detect(text: str, known: str | None, candidates: tuple[str, ...]) -> language.Detection:
    s = get_settings()
    return language.detect(
        text.removeprefix(VOICE_MARK),
        known=known,
        candidates=candidates,
        minimum=s.language_min_confidence,
        override=s.language_override_confidence,
        shared=(
            shared_detector.client(s.language_detector_socket, s.language_detector_idle_exit_s)
            if s.language_detector == "shared"
            else None
        ),
    )


def _candidates() -> tuple[str, ...]:
    return tuple(c.lower() for c in get_settings().language_candidates)


# --- inbound -----------------------------------------------------------------------------


DETECT_AT_ONCE = 4  # messages detected and translated side by side (threads, HTTP calls)


@jobs.batch_handler(TRANSLATE_MESSAGE, size=50)
async def translate_inbound_batch(batch: jobs.Batch[MessageRef]) -> None:
    """The due messages side by side (detection runs in threads, translation is a call
    to the provider), then what became of all of them in one transaction that also marks
    their jobs done. One that fails is retried alone (a provider's error is recorded on its
    message first, as "failed", and the job retried)."""
    outcomes: dict[int, _Outcome] = {}
    uses: list[cache.Use] = []  # the translation cache's, written with the outcomes
    read = await _read_all([p.message_id for p in batch.payloads])
    await batch.in_lanes(
        ([i] for i in range(len(batch))),
        lambda i: _attempt(read.get(batch.payloads[i].message_id), outcomes, i, uses),
        at_once=DETECT_AT_ONCE,
        held="",
    )
    await _record_all(outcomes, uses, batch)


async def translate_inbound(payload: MessageRef) -> None:
    """Detect the language of an inbound message and translate it for the agents (the
    batch of one)."""
    outcomes: dict[int, _Outcome] = {}
    uses: list[cache.Use] = []
    read = await _read_all([payload.message_id])
    try:
        await _attempt(read.get(payload.message_id), outcomes, 0, uses)
    finally:
        if outcomes or uses:
            await _record_all(outcomes, uses)


@dataclass(frozen=True)
class _Inbound:
    """An inbound message still to detect (and maybe translate), with what decides it."""

    message: Message
    conversation: Conversation
    customer_language: str | None
    readers: list[str]  # the languages its assignee reads, the target first


async def _read_all(message_ids: list[int]) -> dict[int, _Inbound]:
    """The messages of ``message_ids`` that still need their language, each with its
    conversation, its customer's language and its readers: for a whole batch in a few
    queries (messages, conversations, customers, one per assignee), not four per message."""
    async with get_db().read_session() as session:
        messages = [
            m
            for m in (await inbox_reads.messages_by_id(session, message_ids)).values()
            if m.direction == "in" and m.translation_status not in ("done", "not_needed", "off")
        ]  # (settled by an earlier run: an edit resets it)
        if not messages:
            return {}
        conversations = await inbox_reads.conversations_by_id(
            session, {m.conversation_id for m in messages}
        )
        customers = await crm_reads.customers_by_id(
            session, {c.customer_id for c in conversations.values()}
        )
        readers: dict[int | None, list[str]] = {}
        read = {}
        for message in messages:
            conversation = conversations[message.conversation_id]
            customer = customers.get(conversation.customer_id)
            if customer is None or customer.merged_into_id is not None:
                customer = await get_customer(session, conversation.customer_id)  # merged
            who = conversation.assignee_id
            if who not in readers:
                readers[who] = await reader_languages(session, who)
            read[message.id] = _Inbound(message, conversation, customer.language, readers[who])
    return read  # type: ignore[return-value]


async def _attempt(
    inbound: _Inbound | None, outcomes: dict[int, _Outcome], i: int, uses: list[cache.Use]
) -> None:
    """``_translate`` into ``outcomes[i]`` (its cache use into ``uses``); nothing for a
    message that needs nothing (None). After a provider's error, its "failed" outcome is
    kept there too and the job is to be retried (``RetryLater``)."""
    if inbound is None:
        return
    try:
        outcome = await _translate(inbound, uses)
    except _ProviderError as exc:
        outcomes[i] = exc.outcome
        raise exc.retry from exc
    if outcome is not None:
        outcomes[i] = outcome


@dataclass(frozen=True)
class _Outcome:
    """What became of one inbound message: written by ``_record_all``."""

    message_id: int
    conversation_id: int
    text: str  # the words detected (an edit meanwhile leaves the message alone)
    detection: language.Detection
    status: str
    note: str
    translated: str | None = None


class _ProviderError(Exception):
    """The provider failed: the message records it, and its job is retried."""

    def __init__(self, outcome: _Outcome, retry: jobs.RetryLater) -> None:
        super().__init__(str(retry))
        self.outcome, self.retry = outcome, retry


async def _translate(inbound: _Inbound, uses: list[cache.Use]) -> _Outcome | None:
    """Detect and translate, without writing; None when there is nothing to do."""
    message, conversation, readers = inbound.message, inbound.conversation, inbound.readers
    message_id = message.id
    text = words(message)
    if not text.strip():
        return None  # a voice note: inbox.voice queues this job again with the transcript
    detection = await _inbound_language(message, conversation, inbound.customer_language, text)
    status, note = _decide(detection, conversation, readers)
    outcome = _Outcome(message_id, conversation.id, text, detection, status, note)  # type: ignore[arg-type]
    if status != "translate":
        return outcome
    target = readers[0]
    try:
        translated, cached = await translate_cached(
            text, detection.language or "", target, uses=uses
        )
    except TranslationRefused as exc:
        return replace(outcome, status="failed", note=str(exc))
    except TranslationError as exc:
        retry = jobs.RetryLater(f"translating message {message_id}: {exc}")
        raise _ProviderError(replace(outcome, status="failed", note=str(exc)), retry) from exc
    note = f"{detection.language}->{target} by {provider_config().provider}" + (
        " (cached)" if cached else ""
    )
    return replace(outcome, status="done", note=note, translated=translated)


async def _inbound_language(
    message: Message, conversation: Conversation, customer_language: str | None, text: str
) -> language.Detection:
    if conversation.language_source == "agent" and conversation.language:
        return language.Detection(conversation.language, 1.0, "set by an agent")
    if text.startswith(VOICE_MARK) and message.original_language:
        return language.Detection(message.original_language, 1.0, "whisper's language")
    known = conversation.language or customer_language
    return await asyncio.to_thread(_detect, text, known, _candidates())


def _decide(
    detection: language.Detection, conversation: Conversation, readers: list[str]
) -> tuple[str, str]:
    if not get_settings().translation_enabled:
        return "off", "translation is switched off for the team"
    if not provider_chosen():
        return "off", "no provider configured (HELIOGRAPH_TRANSLATION_PROVIDER)"
    if not conversation.translation_enabled:
        return "off", "translation is switched off for this conversation"
    if detection.language is None:
        return "not_needed", f"language unknown ({detection.reason})"
    if detection.language in readers:
        return "not_needed", f"{detection.language} is read by the team ({detection.reason})"
    return "translate", detection.reason


async def _record_all(
    outcomes: dict[int, _Outcome],
    uses: list[cache.Use],
    batch: jobs.Batch[MessageRef] | None = None,
) -> None:
    """Write the outcomes (keyed by their job's index in ``batch``) and the translation
    cache's ``uses`` in one transaction, ``batch``'s jobs marked done in its commit. The
    conversations' rows are taken first, in id order, as routing takes them (its batch
    locks conversations, then stamps their messages): taken the other way round, the two
    deadlocked on PostgreSQL under load (bench/pipeline.py at 50 msg/s: 11 translations
    retried)."""
    async with get_db().session() as session:
        ids = sorted({o.conversation_id for o in outcomes.values()})
        locked = (
            select(Conversation).where(col(Conversation.id).in_(ids)).order_by(col(Conversation.id))
        )
        conversations = {
            c.id: c for c in (await session.execute(locked.with_for_update())).scalars().all()
        }
        messages = await inbox_reads.messages_by_id(
            session, (o.message_id for o in outcomes.values())
        )
        for i in sorted(outcomes):
            outcome = outcomes[i]
            message = messages.get(outcome.message_id)
            if message is None or words(message) != outcome.text:
                continue  # edited meanwhile: the edit's own job takes over
            await _record(session, outcome, message, conversations.get(outcome.conversation_id))
        await cache.record(session, uses)
        if batch is not None:
            await batch.complete_in(session)
        await session.commit()


async def _record(
    session: AsyncSession, outcome: _Outcome, message: Message, conversation: Conversation | None
) -> None:
    message.original_language = outcome.detection.language
    message.translation_status = outcome.status
    message.translation_note = outcome.note[:500]
    if outcome.translated is not None:
        message.original_text = outcome.text
        message.text = outcome.translated
    elif message.original_text is not None:
        # An earlier translation no longer stands (a corrected language): the customer's
        # words are shown again.
        message.text, message.original_text = message.original_text, None
    if conversation is not None:
        _maybe_switch(conversation, outcome.detection, outcome.text)
    if outcome.status == "done":
        await jobs.publish(
            session,
            MESSAGE_TRANSLATED,
            MessageTranslated(
                message_id=outcome.message_id, conversation_id=outcome.conversation_id
            ),
        )
    # Open pages show the translation (or the words again) without a reload.
    pages_changed(outcome.conversation_id, session=session)


def _maybe_switch(conversation: Conversation, detection: language.Detection, text: str) -> None:
    """Keep the conversation's language: set or moved only by a message long enough to
    tell (a word like "message" or "ok" must not make every reply go out in French)."""
    if conversation.language_source == "agent" or detection.language is None:
        return
    if conversation.language == detection.language:
        return
    if sum(ch.isalpha() for ch in text) >= SWITCH_MIN_LETTERS:
        conversation.language, conversation.language_source = detection.language, "detected"


# --- replies -----------------------------------------------------------------------------


async def prepare_reply(
    session: AsyncSession, conversation: Conversation, message: Message
) -> None:
    """In ``reply``'s transaction: queue the reply's translation when the customer's
    language is not one its author reads."""
    if not get_settings().translation_enabled or not conversation.translation_enabled:
        return
    if not message.text.strip():
        return  # a file sent alone: no words to translate, nothing to wait for
    if not provider_chosen():
        return  # nothing goes to a third party the operator did not name
    target = conversation.language
    if target is None:
        return
    if target in await reader_languages(session, message.author_id):
        return  # the author reads (and so presumably wrote in) the customer's language
    message.translation_status = "pending"
    await jobs.enqueue(
        session,
        TRANSLATE_REPLY,
        MessageRef(message_id=message.id),  # type: ignore[arg-type]
        dedupe_key=translate_reply_key(message.id),  # type: ignore[arg-type]
    )


@jobs.handler(TRANSLATE_REPLY)
async def translate_reply(payload: MessageRef) -> None:
    message_id = payload.message_id
    async with get_db().read_session() as session:
        message = await session.get(Message, message_id)
        if message is None or message.translation_status != "pending":
            return  # sent already (translated, or as written after the wait)
        conversation = await session.get(Conversation, message.conversation_id)
        assert conversation is not None
        readers = await reader_languages(session, message.author_id)
    target, text = conversation.language or "", words(message)
    if not text.strip():  # queued before files alone were let through: send it as it is
        await _settle_reply(message_id, "not_needed", "no words to translate")
        return
    candidates = tuple(dict.fromkeys([*readers, target, *_candidates()]))
    detection = await asyncio.to_thread(_detect, text, readers[0], candidates)
    source = detection.language or readers[0]
    if source == target:
        await _settle_reply(message_id, "not_needed", f"written in {target} already")
        return
    try:
        translated, cached = await translate_cached(text, source, target)
    except TranslationRefused as exc:
        await _settle_reply(message_id, "failed", str(exc), give_up=True)
        return
    except TranslationError as exc:
        await _note_attempt(message_id, str(exc))
        raise jobs.RetryLater(f"translating reply {message_id}: {exc}") from exc
    note = f"{source}->{target} by {provider_config().provider}" + (" (cached)" if cached else "")
    await _settle_reply(message_id, "done", note, text=text, translated=translated, source=source)


async def _note_attempt(message_id: int, error: str) -> None:
    async with get_db().session() as session:
        await session.execute(
            update(Message)
            .where(col(Message.id) == message_id, col(Message.translation_status) == "pending")
            .values(translation_note=error[:500])
        )
        await session.commit()


async def _settle_reply(
    message_id: int,
    status: str,
    note: str,
    *,
    text: str | None = None,
    translated: str | None = None,
    source: str | None = None,
    give_up: bool = False,
) -> bool:
    """Move a pending reply to ``status`` unless someone else settled it first."""
    values: dict[str, Any] = {"translation_status": status, "translation_note": note[:500]}
    if translated is not None:
        values |= {"original_text": text, "text": translated, "original_language": source}
    async with get_db().session() as session:
        result = await session.execute(
            update(Message)
            .where(
                col(Message.id) == message_id,
                col(Message.translation_status) == "pending",
                col(Message.delivery_status) == "queued",
            )
            .values(**values)
        )
        settled = bool(result.rowcount)  # type: ignore[attr-defined]
        if settled:  # its delivery, deferred while it waited, goes now
            await jobs.due_now_keyed(session, deliver_key(message_id))
        if settled and give_up:
            await _untranslated_note(session, message_id, note)
        await session.commit()
    if settled:
        jobs.wake_workers()
    return settled


async def _untranslated_note(session: AsyncSession, message_id: int, reason: str) -> None:
    message = await session.get(Message, message_id)
    if message is None:
        return
    conversation = await session.get(Conversation, message.conversation_id)
    target = conversation.language if conversation is not None else "?"
    session.add(
        Note(
            conversation_id=message.conversation_id,
            author_id=None,
            text=(
                f"Your reply #{message_id} was sent as written, not translated to {target}: "
                f"{reason}."
            ),
        )
    )


TRANSLATING_RECHECK_S = 0.2  # a delivery waiting on a translation that is being made


async def _translation_job(message_id: int) -> str | None:
    """The status of the reply's translation job."""
    async with get_db().read_session() as session:
        return await jobs.status_keyed(session, translate_reply_key(message_id))


async def hold_reply(message: Message) -> None:
    """Called by delivery for a reply whose translation is pending: wait (``Defer``) up to
    ``translation_reply_wait_s`` from when it was written, then send it as written."""
    wait = get_settings().translation_reply_wait_s
    waited = (utcnow() - message.created_at).total_seconds()
    if waited < wait:
        # Its translation job, once stored, makes this delivery due at once, unless this
        # delivery is running at that moment: then only a short wait catches it. That is
        # so while the job runs (both were claimed together) and when it has just finished
        # (stored after this delivery read the reply). A translation still waiting for its
        # turn or backing off after a provider error wakes the delivery itself.
        soon = await _translation_job(message.id) in ("running", "done")  # type: ignore[arg-type]
        delay = TRANSLATING_RECHECK_S if soon else 1.0
        raise jobs.Defer("the reply's translation is not ready yet", min(delay, wait - waited))
    last = f" (last error: {message.translation_note})" if message.translation_note else ""
    reason = f"the translation did not arrive within {wait:g} s{last}"
    if not await _settle_reply(message.id, "timed_out", reason, give_up=True):  # type: ignore[arg-type]
        raise jobs.Defer("the translation has just arrived", 0.0)


# --- agent's corrections -----------------------------------------------------------------


async def set_language(
    session: AsyncSession, conversation: Conversation, code: str | None
) -> Conversation:
    """An agent says which language the customer writes (None: detect again)."""
    if code is not None:
        code = code.strip().lower()
        if not LANGUAGE_CODE.match(code):
            raise InvalidLanguage(f"{code!r} is not an ISO 639-1 language code such as 'pt'")
    conversation.language = code
    conversation.language_source = "agent" if code else None
    conversation.updated_at = utcnow()
    return conversation


def set_translation(conversation: Conversation, enabled: bool) -> Conversation:
    conversation.translation_enabled = enabled
    conversation.updated_at = utcnow()
    return conversation


async def retranslate_recent(session: AsyncSession, conversation_id: int, limit: int = 20) -> int:
    """Look again at the conversation's last inbound messages (after a correction)."""
    rows = await session.execute(
        select(Message)
        .where(col(Message.conversation_id) == conversation_id, col(Message.direction) == "in")
        .order_by(col(Message.id).desc())
        .limit(limit)
    )
    count = 0
    for message in rows.scalars().all():
        if not words(message).strip():
            continue
        message.translation_status = None
        await jobs.enqueue(session, TRANSLATE_MESSAGE, MessageRef(message_id=message.id))  # type: ignore[arg-type]
        count += 1
    return count
