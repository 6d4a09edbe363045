"""The inbox's periodic work (run by the scheduler's leader)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.models import IdempotencyRecord
from heliograph.scheduler import every
from heliograph.settings import get_settings
from inbox.conversations import wake_snoozed


@every(30)
async def wake_snoozed_conversations(db: Database) -> int:
    async with db.session() as session:
        woken = await wake_snoozed(session)
        await session.commit()
    return woken


@every(3600)
async def purge_finished_jobs(db: Database) -> int:
    async with db.session() as session:
        purged = await jobs.purge_done(session, timedelta(days=3))
        await session.commit()
    return purged


@every(3600)
async def purge_idempotency_records(db: Database) -> int:
    """Idempotency-Key answers past HELIOGRAPH_IDEMPOTENCY_TTL_HOURS (web/idempotency.py)."""
    ttl = timedelta(hours=get_settings().idempotency_ttl_hours)
    async with db.session() as session:
        result = await session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - ttl)  # type: ignore[arg-type]
        )
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
