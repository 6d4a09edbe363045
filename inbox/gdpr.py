"""The inbox's part of GDPR export and erasure (``crm_core.gdpr`` hooks).

Export: the customer's conversations with their messages, attachments and notes, the
translation cache entries of their words, and the jobs about them.

Erasure redacts what the customer wrote and what was written to them but keeps the rows
(the counts and timings the team's statistics are made of); deletes the fetched files,
the translation cache entries of their words (the cache is keyed by the text's hash, so
they are found by hashing the words before they are blanked) and every job that names
one of their conversations, messages or attachments.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import Select, String, case, cast, delete, literal, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import gdpr
from inbox import conversations
from inbox.media import media_dir
from inbox.models import Attachment, Conversation, Message, Note
from inbox.translation import VOICE_MARK
from transcription.cache import text_hash
from transcription.models import TranslationCache

log = logging.getLogger(__name__)
ERASED_TEXT = "[erased]"
_CHUNK = 500  # values per IN list


def _conversations_of(customer_ids: list[int]) -> Select[Any]:
    return select(Conversation.id).where(Conversation.customer_id.in_(customer_ids))  # type: ignore[call-overload, attr-defined]


def _messages_of(customer_ids: list[int]) -> Select[Any]:
    return select(Message.id).where(Message.customer_id.in_(customer_ids))  # type: ignore[call-overload, attr-defined]


def _job_refs(customer_ids: list[int]) -> gdpr.JobRefs:
    return {
        "conversation_id": _conversations_of(customer_ids),
        "message_id": _messages_of(customer_ids),
        "attachment_id": select(Attachment.id).where(  # type: ignore[call-overload]
            Attachment.message_id.in_(_messages_of(customer_ids))  # type: ignore[attr-defined]
        ),
        "note_id": select(Note.id).where(Note.conversation_id.in_(_conversations_of(customer_ids))),  # type: ignore[call-overload, attr-defined]
    }


async def _words(session: AsyncSession, customer_ids: list[int]) -> set[str]:
    """Every text of theirs that may have been sent to the translator: messages (and
    their earlier versions), notes, transcripts; whole and line by line, with and
    without the voice mark (translate_cached strips it)."""
    found: set[str] = set()
    messages = await session.execute(
        select(Message.text, Message.original_text, Message.raw).where(  # type: ignore[call-overload]
            Message.customer_id.in_(customer_ids)  # type: ignore[attr-defined]
        )
    )
    for text, original, raw in messages.all():
        found.update(t for t in (text, original) if t)
        edits = (raw or {}).get("edits") if isinstance(raw, dict) else None
        found.update(str(e.get("text")) for e in edits or [] if isinstance(e, dict))
    notes = await session.execute(
        select(Note.text).where(Note.conversation_id.in_(_conversations_of(customer_ids)))  # type: ignore[call-overload, attr-defined]
    )
    found.update(t for t in notes.scalars() if t)
    heard = await session.execute(
        select(Attachment.transcript).where(  # type: ignore[call-overload]
            Attachment.message_id.in_(_messages_of(customer_ids)),  # type: ignore[attr-defined]
            Attachment.transcript.is_not(None),  # type: ignore[union-attr]
        )
    )
    found.update(t for t in heard.scalars() if t)
    lines = {line.strip() for t in found for line in t.splitlines() if line.strip()}
    every = found | lines
    return every | {t.removeprefix(VOICE_MARK) for t in every}


def _erased_id(column: Any, row_id: Any) -> Any:
    """``erased:<row id>`` where the column held a provider's id (unique still), else as is."""
    blank = or_(column.is_(None), column == "")
    return case((blank, column), else_=literal("erased:").concat(cast(row_id, String)))


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _cache_rows(words: set[str]) -> list[Any]:
    """WHERE clauses (one per chunk) for cache entries whose source or translation is one
    of ``words``."""
    hashes, texts = sorted({text_hash(w) for w in words}), sorted(words)
    clauses = [TranslationCache.text_hash.in_(c) for c in _chunks(hashes)]  # type: ignore[attr-defined]
    clauses += [TranslationCache.translated.in_(c) for c in _chunks(texts)]  # type: ignore[attr-defined]
    return clauses


async def _translations(session: AsyncSession, words: set[str]) -> list[TranslationCache]:
    found: dict[int, TranslationCache] = {}
    for clause in _cache_rows(words):
        for row in (await session.execute(select(TranslationCache).where(clause))).scalars():
            found[row.id] = row  # type: ignore[index]
    return [found[k] for k in sorted(found)]


async def export_inbox(session: AsyncSession, customer_ids: list[int]) -> dict[str, Any]:
    convs = (
        await session.execute(
            select(Conversation)
            .where(Conversation.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
            .order_by(Conversation.id)  # type: ignore[arg-type]
        )
    ).scalars()
    out = []
    for c in convs.all():
        messages = await conversations.messages_of(session, c.id, limit=100_000)  # type: ignore[arg-type]
        files = await conversations.attachments_of(session, [m.id for m in messages])  # type: ignore[misc]
        out.append(
            {
                **gdpr.plain(c),
                "messages": [gdpr.plain(m) for m in messages],
                "attachments": [gdpr.plain(a, ("storage_path",)) for a in files],
                "notes": [gdpr.plain(n) for n in await conversations.notes_of(session, c.id)],  # type: ignore[arg-type]
            }
        )
    cached = await _translations(session, await _words(session, customer_ids))
    return {
        "conversations": out,
        "translations": [gdpr.plain(t, ("id", "text_hash")) for t in cached],
        "jobs": await gdpr.jobs_naming(session, _job_refs(customer_ids)),
    }


def _paths(rows: list[tuple[str | None, str | None]]) -> set[str]:
    """Where the files of these ``(storage_path, provider_file_id)`` are, fetched or not:
    a mail's attachment is written under its content hash (``sha256:<hex>``) before the
    fetch job records the path."""
    found = set()
    for stored, file_id in rows:
        if stored:
            found.add(stored)
        digest = (file_id or "").removeprefix("sha256:")
        if file_id and file_id.startswith("sha256:") and len(digest) == 64:
            found.add(str(media_dir() / digest[:2] / digest))
    return found


async def _remove_files(session: AsyncSession, customer_ids: list[int]) -> int:
    """Delete their files; one is kept while another customer's attachment has the same
    bytes (files are named by their content's hash)."""
    theirs = Attachment.message_id.in_(_messages_of(customer_ids))  # type: ignore[attr-defined]
    columns = (Attachment.storage_path, Attachment.provider_file_id)
    mine = await session.execute(select(*columns).where(theirs))  # type: ignore[call-overload]
    paths = _paths([tuple(r) for r in mine.all()])  # type: ignore[misc]
    if not paths:
        return 0
    file_ids = [f"sha256:{os.path.basename(p)}" for p in paths]
    others = await session.execute(
        select(*columns).where(  # type: ignore[call-overload]
            ~theirs,
            or_(
                Attachment.storage_path.in_(sorted(paths)),  # type: ignore[union-attr]
                Attachment.provider_file_id.in_(file_ids),  # type: ignore[union-attr]
            ),
        )
    )
    shared = _paths([tuple(r) for r in others.all()])  # type: ignore[misc]
    removed = 0
    for path in sorted(paths - shared):
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("erasure: could not remove attachment file %s", path)
    return removed


async def erase_inbox(session: AsyncSession, customer_ids: list[int]) -> dict[str, int]:
    """Redact what the customer wrote and what was written to them; keep the rows (and so
    the counts and timings the team's statistics are made of)."""
    words = await _words(session, customer_ids)
    cache = 0
    for clause in _cache_rows(words):
        cache += int((await session.execute(delete(TranslationCache).where(clause))).rowcount)  # type: ignore[attr-defined]
    jobs = await gdpr.drop_jobs(session, _job_refs(customer_ids))
    removed = await _remove_files(session, customer_ids)
    msg_ids = _messages_of(customer_ids)
    files = await session.execute(
        update(Attachment)
        .where(Attachment.message_id.in_(msg_ids))  # type: ignore[attr-defined]
        .values(url=None, filename=None, storage_path=None, provider_file_id=None, transcript=None)
    )
    messages = await session.execute(
        update(Message)
        .where(Message.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
        .values(
            text=ERASED_TEXT,
            original_text=None,
            raw=None,
            delivery_error=None,
            # A Telegram message id is "chat id:n", and the chat id is the person's;
            # still unique per message, so a replayed webhook is still refused.
            provider_message_id=_erased_id(Message.provider_message_id, Message.id),
            external_id=None,
        )
    )
    notes = await session.execute(
        update(Note)
        .where(Note.conversation_id.in_(_conversations_of(customer_ids)))  # type: ignore[attr-defined]
        .values(text=ERASED_TEXT)
    )
    convs = await session.execute(
        update(Conversation)
        .where(Conversation.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
        # The thread key can be an email's Message-ID; unique per conversation still.
        .values(
            subject=None,
            identity_id=None,
            thread_key=_erased_id(Conversation.thread_key, Conversation.id),
        )
    )
    return {
        "message": int(messages.rowcount),  # type: ignore[attr-defined]
        "attachment": int(files.rowcount),  # type: ignore[attr-defined]
        "file": removed,
        "note": int(notes.rowcount),  # type: ignore[attr-defined]
        "conversation": int(convs.rowcount),  # type: ignore[attr-defined]
        "translation_cache": cache,
        "job": jobs,
    }


gdpr.export_hooks.append(export_inbox)
gdpr.erase_hooks.append(erase_inbox)
