"""The inbox's periodic work (run by the scheduler's leader)."""

from __future__ import annotations

from datetime import timedelta

from heliograph import idempotency, jobs
from heliograph.db import Database
from heliograph.scheduler import every
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
    async with db.session() as session:
        purged = await idempotency.purge_expired(session)
        await session.commit()
    return purged
