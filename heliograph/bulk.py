"""Set-based SQL, the same on SQLite and PostgreSQL: the kernel's one bulk-writing kit.

- ``new_row``, ``insert_ids`` and ``insert_new``: rows for a Core multi-row INSERT
  (synchronous, on a ``Connection``: the ingest writer), their new ids in order, or
  insert-or-ignore.
- ``insert_ignore``, ``upsert``, ``update_rows`` (async, on a session): insert-or-ignore,
  upsert and per-row updates.
- ``among``, ``pairs_in``, ``chunks``: ``IN`` conditions and the batches they take.

Every row written here gets the same defaults for the columns it leaves out
(``_defaults``): the table's model's Python-side ones, as ``Model(**values)`` would have.

Both engines speak ``INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE`` (SQLite since
3.24, https://www.sqlite.org/lang_upsert.html; PostgreSQL since 9.5) and ``RETURNING``
(SQLite 3.35), so a batch of 1,000 events is a handful of statements, not 1,000.

On PostgreSQL SQLAlchemy renders them from its dialect's ``insert``, and a list of rows
goes out as multi-row VALUES ("insertmanyvalues"). On SQLite the statement text is made
here and goes straight to the driver, as one ``executemany`` (or, with RETURNING, one
multi-row VALUES), with each value converted up front to what SQLAlchemy would have
stored (``_sqlite_columns``; ``tests/crm_core/test_bulk.py`` compares the stored text).
SQLAlchemy's per-row, per-value parameter work was about a third of a batch's CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    and_,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.main import default_registry
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from heliograph import jsoncodec

T = TypeVar("T")

# Well under SQLite's 32,766 and asyncpg's 32,767 bound parameters per statement.
IN_CHUNK = 2000


def dialect_name(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def is_postgres(session: AsyncSession) -> bool:
    return dialect_name(session) == "postgresql"


def among(session: AsyncSession, column: Any, values: Iterable[Any]) -> Any:
    """``column IN (values)``. On SQLite the list goes as one JSON parameter read by
    ``json_each``, so the statement's text (and SQLite's prepared statement) is the same
    for any number of values: rendering and preparing 1,000 bound values cost 0.5-1.3 ms
    a read. PostgreSQL gets a plain IN list."""
    if is_postgres(session):
        return column.in_(list(values))
    ids = literal(jsoncodec.dumps(list(values)), Text())
    return column.in_(select(literal_column("value")).select_from(func.json_each(ids)))


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- defaults ----------------------------------------------------------------------------


@functools.cache
def _defaults(table: Table) -> tuple[tuple[str, Any, Callable[[], Any] | None], ...]:
    """The Python-side defaults of ``table``'s columns: ``(name, value, factory)``, the
    factory (called per row) or else the value. They are its model's field defaults
    (``default=``, ``default_factory=``, None included, as ``Model(**values)`` has them,
    even for a field declared with its own ``sa_column``); a table no model maps has its
    columns' ``default=``."""
    model = _model_of(table)
    found: list[tuple[str, Any, Callable[[], Any] | None]] = []
    for column in table.c:
        if column.primary_key:
            continue
        field = model.model_fields.get(column.name) if model is not None else None
        if field is not None:
            if field.default_factory is not None:
                found.append((column.name, None, field.default_factory))  # type: ignore[arg-type]
            elif not field.is_required():
                found.append((column.name, field.default, None))
        elif column.default is not None and column.default.is_scalar:
            found.append((column.name, column.default.arg, None))  # type: ignore[attr-defined]
        elif column.default is not None and column.default.is_callable:
            call = column.default.arg  # type: ignore[attr-defined]
            found.append((column.name, None, lambda call=call: call(None)))
    return tuple(found)


def _model_of(table: Table) -> Any:
    for mapper in default_registry.mappers:
        if mapper.local_table is table:
            return mapper.class_
    return None


def new_row(model: Any, **values: Any) -> dict[str, Any]:
    """The values of a new ``model`` row for a Core (multi-row) INSERT: what the caller
    gives over the model's Python-side defaults, as ``model(**values)`` would have them,
    without building an ORM object."""
    row = {
        name: value if make is None else make()
        for name, value, make in _defaults(model.__table__)
        if name not in values
    }
    row.update(values)
    return row


# --- conditions ------------------------------------------------------------------------


def pairs_in(group_col: Any, key_col: Any, pairs: Iterable[tuple[Any, Any]]) -> Any:
    """``(group_col, key_col) IN pairs`` as one indexed ``IN`` per group (a channel, a
    kind): portable, and each part an index seek on a ``(group, key)`` unique key."""
    groups: dict[Any, list[Any]] = {}
    for group, key in pairs:
        groups.setdefault(group, []).append(key)
    return or_(*(and_(group_col == g, key_col.in_(keys)) for g, keys in groups.items()))


# --- synchronous Core writes (the ingest writer) ------------------------------------------


def insert_ids(
    conn: Connection, table: Any, rows: list[dict[str, Any]], key: Sequence[str] = ()
) -> list[int]:
    """INSERT ``rows`` into ``table``; the new ids in the order of ``rows``. With ``key``, the
    columns of a key unique among the rows, it is one multi-row INSERT whose RETURNING rows
    are matched back by that key (SQLite does not promise them in VALUES order). Without,
    SQLAlchemy keeps the order itself, on SQLite by inserting row by row."""
    if not key:
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(conn.execute(stmt, rows).scalars())
    stmt = insert(table).returning(table.c.id, *(table.c[name] for name in key))
    ids = {tuple(row[1:]): row[0] for row in conn.execute(stmt, rows).all()}
    return [ids[tuple(row[name] for name in key)] for row in rows]


def insert_new(
    conn: Connection, table: Table, rows: list[dict[str, Any]], conflict: Sequence[str]
) -> None:
    """INSERT ``rows`` into ``table``; a row whose ``conflict`` key exists already is
    skipped, silently (``insert_ignore`` on a ``Connection``): one statement."""
    stmt = _insert(conn.dialect.name, table).on_conflict_do_nothing(index_elements=list(conflict))
    conn.execute(stmt, rows)


# --- async session writes ------------------------------------------------------------------


def _insert(dialect: str, table: Table) -> Any:
    """The dialect's INSERT (it has ``on_conflict_do_*``): ``dialect_name(session)`` or
    ``conn.dialect.name``."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _sqlite_datetime(value: Any) -> Any:
    """A timestamp as SQLite stores it (``UTCDateTime`` then SQLite's ``DATETIME``: UTC,
    ``YYYY-MM-DD HH:MM:SS.ffffff``), in one step instead of two per-value processors."""
    if type(value) is datetime and value.tzinfo is UTC:  # the usual case: no conversion
        return value.isoformat(" ", "microseconds")[:26]
    if not isinstance(value, datetime):
        return value
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("Datetime values must have timezone information.")
    # Another zone object (pydantic's own UTC, say): the same instant as UTC's wall time.
    return (value - offset).replace(tzinfo=None).isoformat(" ", "microseconds")


# What the engines write for a JSON column (``heliograph.jsoncodec``).
_dumps = jsoncodec.dumps


def _json_text(none_as_null: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None if none_as_null else "null"
        return _dumps(value)

    return convert


def _to_float(value: Any) -> Any:
    return None if value is None else float(value)


@functools.cache
def _sqlite_columns(table: Table) -> dict[str, Callable[[Any], Any] | None] | None:
    """For each column of ``table``, the conversion that turns a value into what
    SQLAlchemy would have sent SQLite for it (None: the value goes as it is); None when
    a column has a type this does not know, so the writes go through SQLAlchemy."""
    found: dict[str, Callable[[Any], Any] | None] = {}
    for c in table.c:
        kind = c.type
        if isinstance(kind, JSON):
            found[c.name] = _json_text(kind.none_as_null)
        elif isinstance(kind, UTCDateTime):
            found[c.name] = _sqlite_datetime
        elif isinstance(kind, Numeric):  # SQLite has no decimal type: REAL, as SQLAlchemy
            found[c.name] = _to_float
        elif isinstance(kind, Integer | Boolean | String | AutoString):
            found[c.name] = None
        else:
            return None
        default = c.default
        if default is not None and not (default.is_scalar or default.is_callable):
            return None  # a SQL expression or a sequence: SQLAlchemy's to render
    return found


def _complete(
    table: Table, rows: list[dict[str, Any]]
) -> Iterator[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """``rows`` by the columns they name (``_grouped``), each group with the defaults it
    leaves out (``_defaults``, each computed per row) and the columns it then names."""
    for names, group in _grouped(rows).items():
        missing = [d for d in _defaults(table) if d[0] not in names]
        if not missing:
            yield names, group
            continue
        filled = [
            {**row, **{name: value if make is None else make() for name, value, make in missing}}
            for row in group
        ]
        yield (*names, *(name for name, _, _ in missing)), filled


def _sqlite_raw(session: AsyncSession, table: Table) -> dict[str, Any] | None:
    return None if is_postgres(session) else _sqlite_columns(table)


def _grouped(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Rows by the columns they name (usually all of them name the same)."""
    if not rows:
        return {}
    if all(row.keys() == rows[0].keys() for row in rows):
        return {tuple(rows[0]): rows}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


def _values(
    plan: dict[str, Any], names: Sequence[str], rows: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """The rows as lists of ``names``' values, converted for SQLite (``_sqlite_columns``)."""
    memo: dict[Any, Any] = {}

    def timestamp(value: Any) -> Any:  # a batch's ``now`` recurs in every row: once
        text = memo.get(value)
        if text is None:
            text = memo[value] = _sqlite_datetime(value)
        return text

    convert = [
        (i, timestamp if plan[name] is _sqlite_datetime else plan[name])
        for i, name in enumerate(names)
        if plan[name] is not None
    ]
    out = []
    for row in rows:
        values = [row[name] for name in names]
        for i, fn in convert:
            values[i] = fn(values[i])
        out.append(tuple(values))
    return out


def _quoted(session: AsyncSession, names: Iterable[str]) -> list[str]:
    quote = session.bind.dialect.identifier_preparer.quote  # type: ignore[union-attr]
    return [quote(name) for name in names]


def _insert_sql(session: AsyncSession, table: Table, names: Sequence[str], rows: int = 1) -> str:
    one = "(" + ", ".join("?" * len(names)) + ")"
    columns = ", ".join(_quoted(session, names))
    return f"INSERT INTO {_quoted(session, [table.name])[0]} ({columns}) VALUES " + ", ".join(
        [one] * rows
    )


# SQLite's limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER, 3.32+).
_SQLITE_MAX_PARAMS = 32766


async def _sqlite_execute(session: AsyncSession, sql: str, params: Any) -> Any:
    """Straight to the driver: one ``executemany`` (a list of rows) or ``execute``.
    Pending ORM changes are flushed first, as ``session.execute`` would."""
    await session.flush()
    conn = await session.connection()
    return await conn.exec_driver_sql(sql, params)


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
    plan = _sqlite_raw(session, table)
    if plan is not None and any(plan[name] is not None for name in returning):
        plan = None  # values to convert on the way back: SQLAlchemy's work
    found: list[Any] = []
    for names, group in _complete(table, rows):
        if plan is None:
            stmt = _insert(dialect_name(session), table).on_conflict_do_nothing(
                index_elements=list(conflict)
            )
            if not returning:
                await session.execute(stmt, group)
                continue
            back = stmt.returning(*(table.c[name] for name in returning))
            found.extend((await session.execute(back, group)).all())
            continue
        target = ", ".join(_quoted(session, conflict))
        values = _values(plan, names, group)
        if not returning:
            sql = f"{_insert_sql(session, table, names)} ON CONFLICT ({target}) DO NOTHING"
            await _sqlite_execute(session, sql, values)
            continue
        back_sql = ", ".join(_quoted(session, returning))
        for part in chunks(values, _SQLITE_MAX_PARAMS // len(names)):
            sql = (
                f"{_insert_sql(session, table, names, len(part))} "
                f"ON CONFLICT ({target}) DO NOTHING RETURNING {back_sql}"
            )
            flat = tuple(v for row in part for v in row)
            found.extend((await _sqlite_execute(session, sql, flat)).all())
    return found


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    conflict: Sequence[str],
    update: Iterable[str],
) -> None:
    """Insert ``rows``, or overwrite the ``update`` columns of the row already there."""
    update = list(update)
    plan = _sqlite_raw(session, table)
    for names, group in _complete(table, rows):
        if plan is None:
            stmt = _insert(dialect_name(session), table)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict), set_={name: stmt.excluded[name] for name in update}
            )
            await session.execute(stmt, group)
            continue
        target = ", ".join(_quoted(session, conflict))
        changes = ", ".join(f"{q} = excluded.{q}" for q in _quoted(session, update))
        sql = f"{_insert_sql(session, table, names)} ON CONFLICT ({target}) DO UPDATE SET {changes}"
        await _sqlite_execute(session, sql, _values(plan, names, group))


async def update_rows(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], key: str = "id"
) -> None:
    """``UPDATE table SET ... WHERE key = ?`` for each row, setting the columns that row
    names: one executemany per set of columns (so a row carries only what changed)."""
    if not rows:
        return
    plan = _sqlite_raw(session, table)
    for names, group in _grouped(rows).items():
        columns = [name for name in names if name != key]
        if plan is not None:
            sets = ", ".join(f"{q} = ?" for q in _quoted(session, columns))
            table_name, key_name = _quoted(session, [table.name, key])
            sql = f"UPDATE {table_name} SET {sets} WHERE {key_name} = ?"
            await _sqlite_execute(session, sql, _values(plan, [*columns, key], group))
            continue
        stmt = (
            sa_update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({name: bindparam(f"b_{name}") for name in columns})
        )
        await session.execute(stmt, [{f"b_{k}": v for k, v in row.items()} for row in group])
