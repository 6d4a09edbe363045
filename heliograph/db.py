"""The async database engine and sessions, for SQLite (embedded default) and PostgreSQL.

SQLite: WAL mode, ``synchronous=NORMAL`` and a busy timeout. Every write transaction
starts with ``BEGIN IMMEDIATE`` so that a read-then-write transaction takes the write
lock up front instead of failing with SQLITE_BUSY_SNAPSHOT when it tries to upgrade
(https://www.sqlite.org/lang_transaction.html). Inside one process writers also queue
on an asyncio lock, which is fairer (and so gives a better p99) than SQLite's sleeping
busy handler. Read-only sessions use a plain deferred ``BEGIN`` and run in parallel.

The lock has two queues: a ``priority`` writer (the ingest batch writer, whose callers are
webhooks waiting to answer) goes ahead of queued background transactions (jobs). It is
bounded: the lock is handed to a background waiter whenever no priority writer is queued
at release time, and the one priority writer re-queues only after its own release, so
under constant load batches and background transactions alternate: a job waits for at
most one batch, a batch for at most one job transaction.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, event, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.settings import Settings, get_settings

_READONLY = "heliograph_readonly"


def utcnow() -> datetime:
    """Aware UTC: SQLModel stores every timestamp in UTC and hands it back aware."""
    return datetime.now(UTC)


class WriteLock:
    """A FIFO asyncio lock with a second, preferred queue for ``priority`` acquirers."""

    def __init__(self) -> None:
        self._held = False
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),  # priority
            deque(),  # background
        )

    @property
    def locked(self) -> bool:
        return self._held

    async def acquire(self, priority: bool = False) -> None:
        if not self._held and not any(self._queues):
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues[0 if priority else 1]
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed to us just as we were cancelled: pass it on
            elif waiter in queue:
                queue.remove(waiter)
            raise

    def release(self) -> None:
        for queue in self._queues:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # ownership passes straight to the waiter
                    return
        self._held = False

    @asynccontextmanager
    async def hold(self, priority: bool = False) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        self.engine: AsyncEngine = self._make_engine()
        self._write_lock = WriteLock() if self.is_sqlite else None
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._read_sessions = async_sessionmaker(
            self.engine.execution_options(**{_READONLY: True}),
            class_=AsyncSession,
            expire_on_commit=False,
        )

    def _make_engine(self) -> AsyncEngine:
        if not self.is_sqlite:
            return create_async_engine(self.url, pool_size=20, max_overflow=20, pool_pre_ping=True)
        path = self.settings.sqlite_path()
        if path is not None and str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(self.url, connect_args={"timeout": 30}, pool_size=10)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take BEGIN out of the driver's hands; the "begin" hook below emits it.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "reset")
        def _on_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
            # A COMMIT that SQLite refused (e.g. a deferred constraint) leaves its
            # transaction open, and SQLAlchemy, having asked for the commit, does not roll
            # back on return to the pool: without this the next BEGIN on it would fail.
            if dbapi_connection.driver_connection.in_transaction:
                dbapi_connection.rollback()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            if conn.get_execution_options().get(_READONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @asynccontextmanager
    async def session(self, *, priority: bool = False) -> AsyncIterator[AsyncSession]:
        """A read-write session: one transaction, committed by the caller. ``priority``:
        a request is waiting for it (on SQLite it goes ahead of background writers)."""
        if self._write_lock is None:
            async with self._sessions() as session:
                yield session
            return
        async with self._write_lock.hold(priority), self._sessions() as session:
            yield session

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


_db: Database | None = None


def get_db() -> Database:
    global _db
    if _db is None:
        _db = Database(get_settings())
    return _db


async def close_db() -> None:
    global _db
    if _db is not None:
        await _db.dispose()
        _db = None


def row_of(obj: Any) -> dict[str, Any]:
    """A new SQLModel object as the values of a Core multi-row INSERT (its Python-side
    defaults included; no primary key)."""
    table = type(obj).__table__
    return {c.name: getattr(obj, c.name) for c in table.c if not c.primary_key}


def pairs_in(group_col: Any, key_col: Any, pairs: Iterable[tuple[Any, Any]]) -> Any:
    """``(group_col, key_col) IN pairs`` as one indexed ``IN`` per group (a channel, a
    kind): portable, and each part an index seek on a ``(group, key)`` unique key."""
    groups: dict[Any, list[Any]] = {}
    for group, key in pairs:
        groups.setdefault(group, []).append(key)
    return or_(*(and_(group_col == g, key_col.in_(keys)) for g, keys in groups.items()))


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when an IntegrityError is a unique-key clash (the race we retry on)."""
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text
