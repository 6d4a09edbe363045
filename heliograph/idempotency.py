"""Work done at most once per key: the first answer is kept and given back to a retry.

The storage half of ``Idempotency-Key`` (``web/idempotency.py`` is the HTTP half: the
header, the fingerprint of the request and the answers' status codes). Records live in
``heliograph.models.IdempotencyRecord``, one per (scope, key):

- The record is inserted first, in the caller's own transaction, and its answer written
  before the COMMIT. So a crash can never leave an answer without its record (or a record
  without its answer), and concurrent duplicates settle on the unique key (scope, key):
  on PostgreSQL the second INSERT waits for the first transaction and then fails, and
  the loser reads the winner's committed answer; on SQLite writers are serialised
  (``BEGIN IMMEDIATE`` and the write lock), so the second finds the record at once.
  A record seen with no answer yet (``status_code`` 0) is answered "in flight".
- The same key with another fingerprint is refused (``KeyReused``), never answered with
  the other request's result.
- Only successes are kept: work that raises stores nothing (its transaction rolls back),
  so its retry runs again.
- Records expire after ``HELIOGRAPH_IDEMPOTENCY_TTL_HOURS`` (default 24): an expired one
  no longer answers, and ``purge_expired`` (run hourly by
  ``inbox.periodic.purge_idempotency_records``) deletes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import is_unique_violation, utcnow
from heliograph.models import IdempotencyRecord
from heliograph.settings import get_settings


class KeyReused(ValueError):
    """The key was used before for a different request (another fingerprint)."""


@dataclass(frozen=True)
class Done:
    """What the work produced: its status code and JSON body (kept and given back), and
    the customer it concerns (so that erasure finds records that repeat their words)."""

    status_code: int
    body: dict[str, Any]
    customer_id: int | None = None


@dataclass(frozen=True)
class Answer:
    """The answer to give: the work's own, a replay of the kept one, or "in flight"."""

    status_code: int  # 0: the first request with this key is still being handled
    body: Any
    replayed: bool = False

    @property
    def in_flight(self) -> bool:
        return self.status_code == 0


IN_FLIGHT = Answer(0, None)
Work = Callable[[], Awaitable[Done]]


def ttl() -> timedelta:
    return timedelta(hours=get_settings().idempotency_ttl_hours)


async def run_once(
    session: AsyncSession, scope: str, key: str | None, fingerprint: str, work: Work
) -> Answer:
    """``work()`` in ``session``'s transaction, committed here; with a key, at most once
    per (scope, key): a repeat gets the kept answer (``replayed``) or ``IN_FLIGHT``.
    Raises ``KeyReused`` when the key was kept for another fingerprint."""
    if key is None:
        done = await work()
        await session.commit()
        return Answer(done.status_code, done.body)
    stored = await _stored(session, scope, key, fingerprint)
    if stored is not None:
        return stored
    record = IdempotencyRecord(scope=scope, key=key, fingerprint=fingerprint)
    session.add(record)
    try:
        await session.flush()  # takes the key: a concurrent twin waits here, then fails
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        await session.rollback()
        return await _stored(session, scope, key, fingerprint) or IN_FLIGHT
    done = await work()
    record.status_code, record.response = done.status_code, done.body
    record.customer_id = done.customer_id
    await session.commit()
    return Answer(record.status_code, record.response)


async def _stored(session: AsyncSession, scope: str, key: str, fingerprint: str) -> Answer | None:
    """The answer kept for this key; None when there is none (or it expired)."""
    found = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope,  # type: ignore[arg-type]
                IdempotencyRecord.key == key,  # type: ignore[arg-type]
            )
        )
    ).scalar()
    if found is None:
        return None
    if found.created_at < utcnow() - ttl():
        await session.delete(found)  # expired: the key is free again
        await session.flush()
        return None
    if found.fingerprint != fingerprint:
        raise KeyReused(f"key {key!r} was used for a different request")
    if found.status_code == 0:
        return IN_FLIGHT
    return Answer(found.status_code, found.response, replayed=True)


async def purge_expired(session: AsyncSession) -> int:
    """Delete the records older than the TTL, in the caller's transaction; how many."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - ttl())  # type: ignore[arg-type]
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
