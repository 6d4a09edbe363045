"""The inbox's periodic work (run by the scheduler's leader)."""

from __future__ import annotations

from datetime import timedelta

from heliograph import idempotency, jobs
from heliograph.db import Database
from heliograph.scheduler import every
from inbox.conversations import wake_snoozed
from inbox.outbox import settle_early_statuses


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


@every(60)
async def settle_early_status_callbacks(db: Database) -> int:
    """Status callbacks kept because no reply had their id yet (inbox/outbox.py): applied
    where a reply has it now (one that raced the outbox's commit), deleted after a day."""
    async with db.session() as session:
        settled = await settle_early_statuses(session)
        await session.commit()
    return settled
