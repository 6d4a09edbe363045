"""Enrollments kept by activity events, a batch at a time.

- purchase: opens it (or re-opens a refunded one); ``purchased_at``.
- refund: status ``refunded``.
- course_progress, lesson_completed: progress = the highest reported; last activity; at
  100% status ``completed`` and ``completed_at``.
- live_call_attended (attended): last activity.
- milestone_reported: the milestone is added to ``milestones``.
- any event with ``satisfaction``: the latest rating (1-5).

An event about a program the customer never bought still opens an enrollment (a free
course or a trial). The batch's enrollments are read (locked, on PostgreSQL), the
missing ones created with ON CONFLICT DO NOTHING on ``(customer_id, program_id)`` (a
racing batch may create one first) and read too, then changed in Python and written back
in one executemany.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Enrollment
from heliograph.bulk import among, chunks, insert_ignore, is_postgres, update_rows

_FIELDS = (
    "status",
    "started_at",
    "purchased_at",
    "progress",
    "last_activity_at",
    "completed_at",
    "milestones",
    "satisfaction",
)


@dataclass(frozen=True)
class ProgramEvent:
    customer_id: int
    program_id: int
    type: str
    occurred_at: datetime
    progress: int | None = None
    status: str | None = None
    ref: str | None = None
    satisfaction: int | None = None


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def apply_one(row: dict[str, Any], e: ProgramEvent) -> None:
    """Change one enrollment (a dict of its columns) by one event."""
    row["started_at"] = min(row["started_at"], e.occurred_at)
    if e.type == "purchase":
        row["purchased_at"] = row["purchased_at"] or e.occurred_at
        if row["status"] == "refunded":
            row["status"] = "completed" if row["completed_at"] else "active"
    elif e.type == "refund":
        row["status"] = "refunded"
    elif e.type in ("course_progress", "lesson_completed"):
        row["last_activity_at"] = _later(row["last_activity_at"], e.occurred_at)
        row["progress"] = max(row["progress"] or 0, min(e.progress or 0, 100))
        if row["progress"] >= 100 and row["status"] == "active":
            row["status"], row["completed_at"] = "completed", e.occurred_at
    elif e.type == "live_call_attended" and e.status != "missed":
        row["last_activity_at"] = _later(row["last_activity_at"], e.occurred_at)
    elif e.type == "milestone_reported" and e.ref:
        row["milestones"] = [*row["milestones"], {"name": e.ref, "at": e.occurred_at.isoformat()}]
    if e.satisfaction is not None:
        row["satisfaction"] = e.satisfaction


async def _read(
    session: AsyncSession, wanted: set[tuple[int, int]]
) -> dict[tuple[int, int], dict[str, Any]]:
    """Every enrollment of the customers in ``wanted`` (locked on PostgreSQL)."""
    table = Enrollment.__table__  # type: ignore[attr-defined]
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for part in chunks(sorted({cid for cid, _ in wanted})):
        stmt = select(table).where(among(session, table.c.customer_id, part))
        if is_postgres(session):
            stmt = stmt.order_by(table.c.id).with_for_update()
        result = await session.execute(stmt)
        names = list(result.keys())
        for values in result.tuples():  # plain tuples: RowMapping costs 7 us a row here
            r = dict(zip(names, values, strict=True))
            rows[(r["customer_id"], r["program_id"])] = r
    return rows


async def apply_events(
    session: AsyncSession,
    events: list[ProgramEvent],
    now: datetime,
    held: dict[int, list[dict[str, Any]]] | None = None,
) -> int:
    """Apply a batch of program events to their enrollments; returns how many changed.
    ``held``: filled with every enrollment of the customers concerned, as they are now
    (by customer), so the scores need not read them again."""
    if not events:
        return 0
    first: dict[tuple[int, int], datetime] = {}
    for e in events:
        key = (e.customer_id, e.program_id)
        first[key] = min(first.get(key, e.occurred_at), e.occurred_at)
    rows = await _read(session, set(first))
    missing = [
        {
            "customer_id": cid,
            "program_id": pid,
            "status": "active",
            "started_at": at,
            "progress": 0,
            "milestones": [],
            "updated_at": now,
        }
        for (cid, pid), at in first.items()
        if (cid, pid) not in rows
    ]
    if missing:
        table = Enrollment.__table__  # type: ignore[attr-defined]
        for part in chunks(missing, 1000):
            await insert_ignore(session, table, list(part), ["customer_id", "program_id"])
        rows.update(await _read(session, {(m["customer_id"], m["program_id"]) for m in missing}))
    before = {key: tuple(row[f] for f in _FIELDS) for key, row in rows.items()}
    for e in sorted(events, key=lambda e: e.occurred_at):
        apply_one(rows[(e.customer_id, e.program_id)], e)
    changed = []
    for key, row in rows.items():
        fields = {f: row[f] for f, was in zip(_FIELDS, before[key], strict=True) if row[f] != was}
        if fields:  # only what changed: a lesson is progress and last activity, not ten columns
            changed.append({"id": row["id"], **fields, "updated_at": now})
    await update_rows(session, Enrollment.__table__, changed)  # type: ignore[attr-defined]
    if held is not None:
        for (cid, _), row in rows.items():
            held.setdefault(cid, []).append(row)
    return len(changed)
