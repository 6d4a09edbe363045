"""Leader-only passes: shift-end handoffs, and escalation of unacknowledged ones."""

from __future__ import annotations

from handoff import models  # noqa: F401  (tables)
from handoff.service import escalate_unacknowledged, shift_end_pass
from heliograph.db import Database
from heliograph.scheduler import every


@every(60, name="handoff.shift_end")
async def shift_end_task(db: Database) -> int:
    async with db.session() as session:
        handed = await shift_end_pass(session)
        await session.commit()
    return handed


@every(60, name="handoff.escalate")
async def escalate_task(db: Database) -> int:
    async with db.session() as session:
        count = await escalate_unacknowledged(session)
        await session.commit()
    return count
