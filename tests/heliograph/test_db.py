"""``Database.run_session``: async session code in one transaction, on SQLite's writer
thread in one hop. What it stores, what it refuses, and what it leaves when it fails."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import events, interventions
from crm_core.models import (
    ActivityEvent,
    ContactPoint,
    Customer,
    CustomerScore,
    Enrollment,
    Intervention,
    JourneyChange,
)
from heliograph.bulk import insert_ignore
from heliograph.db import Database
from heliograph.migrate import upgrade
from heliograph.settings import Settings
from tests.utils.crm_world import days_ago, ev, make_programs


async def _customers(database: Database) -> list[str]:
    async with database.read_session() as session:
        rows = await session.execute(select(Customer.display_name).order_by(Customer.id))
        return list(rows.scalars().all())


async def _make_ana(session: AsyncSession) -> int:
    """An ORM write, a flush, and a bulk insert with RETURNING (straight to the driver on
    SQLite): the three ways the CRM writes."""
    ana = Customer(display_name="Ana")
    session.add(ana)
    await session.flush()
    got = await insert_ignore(
        session,
        ContactPoint.__table__,  # type: ignore[attr-defined]
        [{"customer_id": ana.id, "kind": "email", "value": "ana@example.com"}],
        ["kind", "value"],
        ["customer_id"],
    )
    assert [tuple(r) for r in got] == [(ana.id,)]
    return ana.id  # type: ignore[return-value]


async def test_the_work_is_committed_and_its_result_returned(database: Database) -> None:
    ana_id = await database.run_session(_make_ana)
    assert await _customers(database) == ["Ana"]
    async with database.read_session() as session:
        owner = await session.execute(
            select(ContactPoint.customer_id).where(ContactPoint.value == "ana@example.com")
        )
        assert owner.scalar_one() == ana_id


async def test_an_error_in_the_work_stores_nothing_and_the_next_one_goes(
    database: Database,
) -> None:
    async def half_then_fail(session: AsyncSession) -> None:
        await _make_ana(session)
        raise ValueError("the third step failed")

    with pytest.raises(ValueError, match="the third step failed"):
        await database.run_session(half_then_fail)
    assert await _customers(database) == []
    await database.run_session(_make_ana)  # the lock and the connection were given back
    assert await _customers(database) == ["Ana"]


async def test_work_that_awaits_anything_else_is_refused_and_stores_nothing(
    sqlite_database: Database,
) -> None:
    async def waits(session: AsyncSession) -> None:
        await _make_ana(session)
        await asyncio.sleep(0)  # no event loop runs on the writer thread

    with pytest.raises(RuntimeError, match="awaited something other than its session"):
        await sqlite_database.run_session(waits)
    assert await _customers(sqlite_database) == []


TABLES: list[tuple[Any, tuple[str, ...]]] = [
    (ActivityEvent, ("received_at",)),
    (Customer, ("created_at", "updated_at")),
    (ContactPoint, ("created_at",)),
    (Enrollment, ("updated_at",)),
    (CustomerScore, ()),
    (JourneyChange, ("recorded_at",)),
    (Intervention, ()),
]


async def _stored(database: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of the CRM's tables, less the columns stamped with the wall clock."""
    found = {}
    async with database.read_session() as session:
        for model, clock in TABLES:
            table = model.__table__
            keep = [c for c in table.c if c.name not in clock]
            rows = await session.execute(select(*keep).order_by(*table.primary_key.columns))
            found[table.name] = [dict(r._mapping) for r in rows]
    return found


async def test_the_writer_thread_stores_exactly_what_a_session_stores(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """The same batches, through ``session()`` (aiosqlite) in one database and through
    ``run_session`` (the writer thread) in another: row for row the same, down to ids."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'beside.db'}"
    await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
    beside = Database(Settings(database_url=url))
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    batches = [
        [
            ev("purchase", "p1", "ana@example.com", days_ago(20, now), program="mind-1", amount=99),
            ev("lesson_completed", "l1", "ana@example.com", days_ago(9, now), program="mind-1"),
            ev("course_progress", "c1", "+4915112345678", days_ago(3, now), program="body-1",
               progress=100),
            ev("support_ticket", "t1", "bo@example.com", days_ago(2, now), ticket_id="T1"),
            ev("support_ticket", "t2", "bo@example.com", days_ago(1, now), ticket_id="T2"),
            ev("support_ticket", "t3", "bo@example.com", days_ago(1, now), ticket_id="T3"),
            ev("milestone_reported", "m1", "cy@example.com", days_ago(1, now),
               milestone="first retreat"),
            ev("refund", "r1", "cy@example.com", days_ago(1, now), program="mind-1", amount=5),
            {"type": "purchase", "idempotency_key": "bad"},  # refused, reported
        ],
        [
            ev("lesson_completed", "l1", "ana@example.com", days_ago(9, now), program="mind-1"),
            ev("community_post", "x1", "ana@example.com", days_ago(0.5, now)),
            ev("course_progress", "c2", "dee@example.com", days_ago(0.2, now), program="mind-1",
               progress=40, satisfaction=5),
        ],
    ]  # fmt: skip
    try:
        results = {}
        for name, database in (("session", beside), ("writer", sqlite_database)):
            await make_programs(database)
            results[name] = []
            for batch in batches:
                if name == "session":
                    async with database.session() as session:
                        result = await events.ingest(session, batch, now=now)
                        await session.commit()
                else:
                    ingest = functools.partial(events.ingest, raw_events=batch, now=now)
                    result = await database.run_session(ingest)
                results[name].append((result.body(), result.journey_changes, result.interventions))
            later = functools.partial(interventions.evaluate, now=now + timedelta(days=8))
            if name == "session":
                async with database.session() as session:
                    await later(session)
                    await session.commit()
            else:
                await database.run_session(later)
        assert results["writer"] == results["session"]
        assert results["writer"][0][0]["accepted"] == 8 and results["writer"][1][0] == {
            "accepted": 2,
            "duplicates": 1,
            "errors": [],
        }
        mine, theirs = await _stored(sqlite_database), await _stored(beside)
        assert mine["intervention"] and mine["journey_change"]  # the batches did move things
        assert mine == theirs
    finally:
        await beside.dispose()
