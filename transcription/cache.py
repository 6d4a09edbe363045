"""Reading and writing the translation cache (keyed by provider, languages, text hash)."""

from __future__ import annotations

import hashlib

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import utcnow
from transcription.models import TranslationCache


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def lookup(
    session: AsyncSession, provider: str, source: str, target: str, text: str
) -> str | None:
    """The cached translation, counting the hit; None on a miss."""
    key = (
        col(TranslationCache.provider) == provider,
        col(TranslationCache.source) == source,
        col(TranslationCache.target) == target,
        col(TranslationCache.text_hash) == text_hash(text),
    )
    found = (await session.execute(select(col(TranslationCache.translated)).where(*key))).scalar()
    if found is not None:
        await session.execute(
            update(TranslationCache)
            .where(*key)
            .values(hits=TranslationCache.hits + 1, last_used_at=utcnow())
        )
    return found


async def store(
    session: AsyncSession, provider: str, source: str, target: str, text: str, translated: str
) -> None:
    """Keep a translation; a concurrent store of the same key is a no-op, not an error."""
    values = {
        "provider": provider,
        "source": source,
        "target": target,
        "text_hash": text_hash(text),
        "translated": translated,
        "hits": 0,
        "created_at": utcnow(),
        "last_used_at": utcnow(),
    }
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(TranslationCache).values(**values).on_conflict_do_nothing()
    await session.execute(stmt)
