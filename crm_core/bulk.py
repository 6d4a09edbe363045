"""Set-based SQL that works the same on SQLite and PostgreSQL: insert-or-ignore, upsert.

Both engines speak ``INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE`` (SQLite since
3.24, https://www.sqlite.org/lang_upsert.html; PostgreSQL since 9.5) and ``RETURNING``
(SQLite 3.35). SQLAlchemy renders them from each dialect's own ``insert``; a list of
rows goes out as multi-row VALUES ("insertmanyvalues"), so a batch of 1,000 events is a
handful of statements, not 1,000.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, MetaData, Table, Text, bindparam
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.sqltypes import UTCDateTime

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


def _sqlite_datetime(value: Any) -> Any:
    """A timestamp as SQLite stores it (``UTCDateTime`` then SQLite's ``DATETIME``: UTC,
    ``YYYY-MM-DD HH:MM:SS.ffffff``), in one step instead of two per-value processors."""
    if type(value) is datetime and value.tzinfo is UTC:  # the usual case: no conversion
        return value.isoformat(" ", "microseconds")[:26]
    if not isinstance(value, datetime):
        return value
    if value.utcoffset() is None:
        raise ValueError("Datetime values must have timezone information.")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# What SQLAlchemy's JSON type writes (``json.dumps`` with its defaults), without the
# wrapper's per-call work; circular structures cannot come from the callers here.
_dumps = json.JSONEncoder(check_circular=False).encode


def _json_text(none_as_null: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None if none_as_null else "null"
        return _dumps(value)

    return convert


@functools.cache
def _sqlite_plain(table: Table) -> tuple[Table, tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """``table`` as the bulk writes see it on SQLite: its JSON and timestamp columns as
    plain text, with the conversions to apply to the values once, up front. SQLAlchemy
    would otherwise run two or three processors per value, which on a batch of 1,000
    events (some 30,000 such values) was a tenth of the batch's CPU."""
    columns, convert = [], []
    for c in table.c:
        kind = c.type
        if isinstance(kind, JSON):
            convert.append((c.name, _json_text(kind.none_as_null)))
            kind = Text()
        elif isinstance(kind, UTCDateTime):
            convert.append((c.name, _sqlite_datetime))
            kind = Text()
        columns.append(Column(c.name, kind, primary_key=c.primary_key))
    return Table(table.name, MetaData(), *columns), tuple(convert)


def _prepared(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]]
) -> tuple[Table, list[dict[str, Any]]]:
    """The table to write through and the rows to write (copies; the caller's stay)."""
    if is_postgres(session):
        return table, rows
    plain, convert = _sqlite_plain(table)
    first = rows[0].keys() if rows else {}.keys()
    present = [(name, fn) for name, fn in convert if name in first]
    out = []
    for row in rows:
        row = dict(row)
        if row.keys() == first:  # the same columns as the first row (the usual case)
            for name, fn in present:
                row[name] = fn(row[name])
        else:
            for name, fn in convert:
                if name in row:
                    row[name] = fn(row[name])
        out.append(row)
    return plain, out


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
    plain, converted = _prepared(session, table, rows)
    if any(name in dict(_sqlite_plain(table)[1]) for name in returning):
        plain, converted = table, rows  # read back as written: keep the column types
    stmt = _insert(session, plain).on_conflict_do_nothing(index_elements=list(conflict))
    if not returning:
        await session.execute(stmt, converted)
        return []
    stmt = stmt.returning(*(plain.c[name] for name in returning))
    result = await session.execute(stmt, converted)
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
    table, rows = _prepared(session, table, rows)
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
    table, rows = _prepared(session, table, rows)
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
