"""Reading and writing the translation cache (keyed by provider, languages, text hash)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import utcnow
from transcription.models import TranslationCache


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Use:
    """One use of the cache, to write later in the caller's transaction (``record``): a
    hit to count (``translated`` None) or a new translation to keep."""

    provider: str
    source: str
    target: str
    text: str
    translated: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.provider, self.source, self.target, self.text


def _key(provider: str, source: str, target: str, text: str) -> tuple[object, ...]:
    return (
        col(TranslationCache.provider) == provider,
        col(TranslationCache.source) == source,
        col(TranslationCache.target) == target,
        col(TranslationCache.text_hash) == text_hash(text),
    )


async def find(
    session: AsyncSession, provider: str, source: str, target: str, text: str
) -> str | None:
    """The cached translation or None, without counting the hit (a read)."""
    key = _key(provider, source, target, text)
    return (await session.execute(select(col(TranslationCache.translated)).where(*key))).scalar()


async def lookup(
    session: AsyncSession, provider: str, source: str, target: str, text: str
) -> str | None:
    """The cached translation, counting the hit; None on a miss."""
    found = await find(session, provider, source, target, text)
    if found is not None:
        await record(session, [Use(provider, source, target, text)])
    return found


async def store(
    session: AsyncSession, provider: str, source: str, target: str, text: str, translated: str
) -> None:
    """Keep a translation; a concurrent store of the same key is a no-op, not an error."""
    await record(session, [Use(provider, source, target, text, translated)])


async def record(session: AsyncSession, uses: Iterable[Use]) -> None:
    """Write ``uses`` in ``session``'s transaction: the new translations first (one
    INSERT, a key stored meanwhile left as it is), then the hits counted, one UPDATE per
    key however many times it was used."""
    now = utcnow()
    uses = list(uses)
    new = {
        (u.provider, u.source, u.target, text_hash(u.text)): u.translated
        for u in uses
        if u.translated is not None
    }
    if new:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        rows = [
            {
                "provider": provider,
                "source": source,
                "target": target,
                "text_hash": hashed,
                "translated": translated,
                "hits": 0,
                "created_at": now,
                "last_used_at": now,
            }
            for (provider, source, target, hashed), translated in new.items()
        ]
        await session.execute(insert(TranslationCache).values(rows).on_conflict_do_nothing())
    hits = Counter(u.key for u in uses if u.translated is None)
    for (provider, source, target, text), count in hits.items():
        await session.execute(
            update(TranslationCache)
            .where(*_key(provider, source, target, text))
            .values(hits=TranslationCache.hits + count, last_used_at=now)
        )
