"""Reading the database in tests: the rows of a model and how many there are.

``rows`` orders by the model's primary key (its ``id`` where it has one), so a test reads
them in the order they were written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text

from heliograph.db import Database


async def rows(database: Database, model: Any, *where: Any) -> list[Any]:
    """The ``model`` rows that match every ``where`` clause, in primary-key order."""
    async with database.read_session() as session:
        stmt = select(model).where(*where).order_by(*model.__table__.primary_key.columns)
        return list((await session.execute(stmt)).scalars().all())


async def count(database: Database, model: Any, *where: Any) -> int:
    """How many ``model`` rows match every ``where`` clause."""
    async with database.read_session() as session:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(stmt)).scalar_one())


async def scalars(database: Database, stmt: Any) -> list[Any]:
    """The first column of every row ``stmt`` selects."""
    async with database.read_session() as session:
        return list((await session.execute(stmt)).scalars().all())


async def result_rows(database: Database, stmt: Any) -> list[Any]:
    """Every row ``stmt`` selects, as tuples."""
    async with database.read_session() as session:
        return list((await session.execute(stmt)).all())


async def a_lock_waits(database: Database) -> bool:
    """PostgreSQL: whether a session of this database is waiting for a row or table lock
    (another transaction holds it): how a test knows a concurrent write is blocked."""
    async with database.read_session() as session:
        waiting = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(waiting.scalar_one()) > 0
