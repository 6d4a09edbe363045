"""Reading and writing the translation cache (keyed by provider, languages, text hash)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.bulk import insert_ignore
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


_KEY = ("provider", "source", "target", "text_hash")  # uq_translation_cache_key


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
    rows = {  # one per key: the same words twice are one row
        (u.provider, u.source, u.target, hashed): {
            "provider": u.provider,
            "source": u.source,
            "target": u.target,
            "text_hash": hashed,
            "translated": u.translated,
            "hits": 0,
            "created_at": now,
            "last_used_at": now,
        }
        for u in uses
        if u.translated is not None
        for hashed in (text_hash(u.text),)
    }
    if rows:
        table = TranslationCache.__table__  # type: ignore[attr-defined]
        await insert_ignore(session, table, list(rows.values()), _KEY)
    hits = Counter(u.key for u in uses if u.translated is None)
    for (provider, source, target, text), count in hits.items():
        await session.execute(
            update(TranslationCache)
            .where(*_key(provider, source, target, text))
            .values(hits=TranslationCache.hits + count, last_used_at=now)
        )
