"""The async database engine and sessions, for SQLite (embedded default) and PostgreSQL.

SQLite: WAL mode, ``synchronous=NORMAL`` and a busy timeout. Every write transaction
starts with ``BEGIN IMMEDIATE`` so that a read-then-write transaction takes the write
lock up front instead of failing with SQLITE_BUSY_SNAPSHOT when it tries to upgrade
(https://www.sqlite.org/lang_transaction.html). Inside one process writers also queue
on an asyncio lock, which is fairer (and so gives a better p99) than SQLite's sleeping
busy handler. Read-only sessions use a plain deferred ``BEGIN`` and run in parallel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.settings import Settings, get_settings

_READONLY = "heliograph_readonly"


def utcnow() -> datetime:
    """Aware UTC: SQLModel stores every timestamp in UTC and hands it back aware."""
    return datetime.now(UTC)


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        self.engine: AsyncEngine = self._make_engine()
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
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

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            if conn.get_execution_options().get(_READONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-write session: one transaction, committed by the caller."""
        if self._write_lock is None:
            async with self._sessions() as session:
                yield session
            return
        async with self._write_lock, self._sessions() as session:
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


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when an IntegrityError is a unique-key clash (the race we retry on)."""
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text
