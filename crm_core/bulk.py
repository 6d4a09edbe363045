"""Set-based SQL that works the same on SQLite and PostgreSQL: insert-or-ignore, upsert.

Both engines speak ``INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE`` (SQLite since
3.24, https://www.sqlite.org/lang_upsert.html; PostgreSQL since 9.5) and ``RETURNING``
(SQLite 3.35). SQLAlchemy renders them from each dialect's own ``insert``; a list of
rows goes out as multi-row VALUES ("insertmanyvalues"), so a batch of 1,000 events is a
handful of statements, not 1,000.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

T = TypeVar("T")

# Well under SQLite's 32,766 and asyncpg's 32,767 bound parameters per statement.
IN_CHUNK = 2000


def dialect_name(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def is_postgres(session: AsyncSession) -> bool:
    return dialect_name(session) == "postgresql"


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(session: AsyncSession, table: Table) -> Any:
    return postgresql.insert(table) if is_postgres(session) else sqlite.insert(table)


async def insert_ignore(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert ``rows``; a row whose ``conflict`` key exists already is skipped, silently.

    With ``returning``, the listed columns of the rows actually inserted come back.
    """
    if not rows:
        return []
    stmt = _insert(session, table).on_conflict_do_nothing(index_elements=list(conflict))
    if not returning:
        await session.execute(stmt, rows)
        return []
    stmt = stmt.returning(*(table.c[name] for name in returning))
    result = await session.execute(stmt, rows)
    return list(result.all())


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    update: Iterable[str],
) -> None:
    """Insert ``rows``, or overwrite the ``update`` columns of the row already there."""
    if not rows:
        return
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(conflict), set_={name: stmt.excluded[name] for name in update}
    )
    await session.execute(stmt, rows)


async def update_rows(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], key: str = "id"
) -> None:
    """``UPDATE table SET ... WHERE key = ?`` for each row, setting the columns that row
    names: one executemany per set of columns (so a row carries only what changed)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for names, group in groups.items():
        columns = [name for name in names if name != key]
        stmt = (
            sa_update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({name: bindparam(f"b_{name}") for name in columns})
        )
        await session.execute(stmt, [{f"b_{k}": v for k, v in row.items()} for row in group])
