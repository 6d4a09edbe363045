"""The bulk writes store exactly what the ORM stores (SQLite converts values up front)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from crm_core.models import Customer, CustomerScore
from heliograph.bulk import upsert
from heliograph.db import Database

SCORE_COLUMNS = [c.name for c in CustomerScore.__table__.c]  # type: ignore[attr-defined]


def _score(customer_id: int, at: datetime) -> dict:
    return {
        "customer_id": customer_id,
        "engagement": 40,
        "engagement_inputs": {"days_since_activity": 1.5, "note": None},
        "health": 80,
        "health_inputs": {},
        "progression": 0,
        "progression_inputs": {"why": "not enrolled in any program"},
        "ltv_inputs": {"purchases": "0", "refunds": "0"},
        "last_activity_at": at,
        "last_course_activity_at": None,
        "last_course_event_id": None,
        "computed_at": at,
        "activity": None,
    }


async def test_a_bulk_upsert_reads_back_like_an_orm_write(database: Database) -> None:
    at = datetime(2026, 3, 1, 23, 30, 0, tzinfo=timezone(timedelta(hours=2)))
    async with database.session() as session:
        first, second = Customer(display_name="Orm"), Customer(display_name="Bulk")
        session.add_all([first, second])
        await session.flush()
        session.add(CustomerScore(**_score(first.id, at)))
        await session.flush()
        table = CustomerScore.__table__  # type: ignore[attr-defined]
        await upsert(session, table, [_score(second.id, at)], ["customer_id"], SCORE_COLUMNS[1:])
        await session.commit()
        ids = (first.id, second.id)
    async with database.read_session() as session:
        orm, bulk = [await session.get(CustomerScore, cid) for cid in ids]
        assert bulk is not None and orm is not None
        assert bulk.computed_at == datetime(2026, 3, 1, 21, 30, tzinfo=UTC)
        assert bulk.engagement_inputs == {"days_since_activity": 1.5, "note": None}
        assert bulk.activity is None and bulk.last_course_activity_at is None
        names = ", ".join(c for c in SCORE_COLUMNS if c != "customer_id")
        raw = (
            await session.execute(
                text(f"SELECT {names} FROM customer_score WHERE customer_id IN (:a, :b)"),
                {"a": ids[0], "b": ids[1]},
            )
        ).all()
        assert raw[0] == raw[1]  # the same stored text, column by column
        activity = (
            await session.execute(
                text("SELECT activity IS NULL FROM customer_score WHERE customer_id = :b"),
                {"b": ids[1]},
            )
        ).scalar()
        assert activity  # SQL NULL, not the JSON text 'null' (the column's none_as_null)


async def test_a_naive_timestamp_is_refused_by_the_bulk_path_too(database: Database) -> None:
    async with database.session() as session:
        customer = Customer(display_name="Naive")
        session.add(customer)
        await session.flush()
        row = _score(customer.id, datetime(2026, 3, 1, 12, 0))  # no timezone
        table = CustomerScore.__table__  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="timezone"):
            await upsert(session, table, [row], ["customer_id"], SCORE_COLUMNS[1:])


async def test_a_bulk_insert_fills_the_defaults_a_row_leaves_out(database: Database) -> None:
    from crm_core.models import Enrollment, Program
    from heliograph.bulk import insert_ignore

    async with database.session() as session:
        customer = Customer(display_name="Defaults")
        program = Program(code="d-1", name="D", category="mind")
        session.add_all([customer, program])
        await session.flush()
        row = {"customer_id": customer.id, "program_id": program.id, "milestones": []}
        table = Enrollment.__table__  # type: ignore[attr-defined]
        got = await insert_ignore(
            session, table, [row], ["customer_id", "program_id"], ["id", "customer_id"]
        )
        again = await insert_ignore(session, table, [row], ["customer_id", "program_id"], ["id"])
        await session.commit()
    assert len(got) == 1 and got[0][1] == customer.id
    assert again == []  # the conflict is skipped, and nothing comes back for it
    async with database.read_session() as session:
        stored = await session.get(Enrollment, got[0][0])
        assert stored is not None
        assert (stored.status, stored.progress) == ("active", 0)
        assert stored.started_at.tzinfo is not None and stored.updated_at is not None
