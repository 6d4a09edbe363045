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
import contextlib
import contextvars
import functools
import sqlite3
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jsoncodec
from heliograph.settings import Settings, get_settings

_READONLY = "heliograph_readonly"
T = TypeVar("T")


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
        self._writer = self._make_writer()
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
            return create_async_engine(
                self.url,
                pool_size=20,
                max_overflow=20,
                pool_pre_ping=True,
                **jsoncodec.ENGINE_OPTIONS,
            )
        path = self.settings.sqlite_path()
        if path is not None and str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            self.url, connect_args={"timeout": 30}, pool_size=10, **jsoncodec.ENGINE_OPTIONS
        )
        _sqlite_hooks(engine.sync_engine)
        return engine

    def _make_writer(self) -> tuple[Engine, ThreadPoolExecutor] | None:
        """SQLite files: a plain (sync) engine on one dedicated thread, for transactions that
        run in one hop (``run_transaction``) instead of four thread hops per statement."""
        path = self.settings.sqlite_path() if self.is_sqlite else None
        if path is None or str(path) == ":memory:":
            return None
        sync_url = make_url(self.url).set(drivername="sqlite")
        engine = create_engine(
            sync_url, connect_args={"timeout": 30}, pool_size=1, **jsoncodec.ENGINE_OPTIONS
        )
        _sqlite_hooks(engine)
        self._checkpointer = Checkpointer(path)
        return engine, ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")

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

    async def run_transaction(
        self, work: Callable[[Connection], T], *, priority: bool = False
    ) -> T:
        """``work(connection)`` in one write transaction, committed here. ``work`` is plain
        synchronous Core code; on a SQLite file it runs on the writer thread in one hop, on
        PostgreSQL through the async driver (``run_sync``). If ``work`` raises, the
        transaction is rolled back and the error propagates; if the commit fails,
        ``CommitFailed`` is raised: nothing of the transaction may be taken as stored."""
        if self._writer is not None:
            return await self._on_writer(priority, _transact, self._writer[0], work)
        lock = self._write_lock.hold(priority) if self._write_lock else contextlib.nullcontext()
        async with lock, self.engine.connect() as conn:  # (SQLite in memory: no writer thread)
            await conn.begin()
            try:
                result = await conn.run_sync(work)
            except BaseException:
                await conn.rollback()
                raise
            with _commit_or_fail():
                await conn.commit()
            return result

    async def run_session(
        self, work: Callable[[AsyncSession], Coroutine[Any, Any, T]], *, priority: bool = False
    ) -> T:
        """``await work(session)`` in one write transaction, committed here: ``work`` is
        ordinary async session code. On a SQLite file it runs on the writer thread, in one
        hop, over the plain driver (``WriterSession``): none of its statements crosses to
        aiosqlite's thread and back. Elsewhere it gets a session from ``session()``.
        ``work`` may await only its session; anything else is an error on the writer
        thread (it has no event loop). As with ``run_transaction``, an error in ``work``
        rolls everything back, and a failed commit raises ``CommitFailed``.

        Measured with bench/events.py (a million events, SQLite): 4,961 -> 6,450 events/s
        against the same batches in ``session()``, where each statement is several hops
        between the event loop and aiosqlite's thread, each through a greenlet."""
        if self._writer is None:
            async with self.session(priority=priority) as session:
                result = await work(session)
                with _commit_or_fail():
                    await session.commit()
                return result
        return await self._on_writer(priority, _run_session, self.engine, self._writer[0], work)

    async def _on_writer(self, priority: bool, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the SQLite writer thread, holding the write lock."""
        assert self._writer is not None and self._write_lock is not None
        async with self._write_lock.hold(priority):
            loop = asyncio.get_running_loop()
            # In the caller's context, as on PostgreSQL: jobs enqueued there keep its request id.
            run = functools.partial(contextvars.copy_context().run, fn, *args)
            return await loop.run_in_executor(self._writer[1], run)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._writer is not None:
            engine, thread = self._writer
            thread.shutdown(wait=True)
            engine.dispose()
            self._checkpointer.stop()


class Checkpointer:
    """Copies a SQLite file's write-ahead log back into the database from a thread of its
    own, so that writers' COMMITs seldom do: otherwise the COMMIT that takes the WAL past
    ``wal_autocheckpoint`` pages copies all of it back and syncs the file, and that batch
    is about twice as slow as the others. ``PASSIVE`` never waits for, nor blocks, a
    reader or a writer; ``wal_autocheckpoint`` stays as the backstop. With the log copied
    back, the next writer starts the WAL from its beginning, so it stays small. Measured
    with bench/events.py (a million events): batch p99 342 -> 291 ms, 4,881 -> 5,012
    events/s. The connection opens the file read-write without creating it (before
    ``heliograph migrate`` there is nothing to checkpoint)."""

    INTERVAL_S = 0.25

    def __init__(self, path: Path) -> None:
        self._uri = f"{path.resolve().as_uri()}?mode=rw"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.INTERVAL_S):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # not migrated yet, or busy: the next tick tries again
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class CommitFailed(RuntimeError):
    """A transaction's COMMIT failed: none of its writes may be reported as stored."""


@contextlib.contextmanager
def _commit_or_fail() -> Iterator[None]:
    """Around a COMMIT: if it fails, ``CommitFailed`` (nothing of it may be taken as stored)."""
    try:
        yield
    except Exception as exc:
        raise CommitFailed(f"the commit failed: {exc}") from exc


def _transact(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``Database.run_transaction`` on the SQLite writer thread."""
    with engine.connect() as conn:
        conn.begin()
        try:
            result = work(conn)
        except BaseException:
            conn.rollback()
            raise
        with _commit_or_fail():
            conn.commit()
        return result


class WriterSession(AsyncSession):
    """The ``AsyncSession`` API over the writer thread's plain (sync) engine. Each call
    still goes through ``greenlet_spawn``, which returns at once because the sync driver
    never waits on the event loop, so a coroutine that awaits only this session runs to
    its end in one ``send`` (``_drive``). ``bind`` stays the async engine (its dialect
    is the same SQLite's); ``connection()`` gives the sync connection behind an async
    ``exec_driver_sql``."""

    def __init__(self, async_engine: AsyncEngine, engine: Engine) -> None:
        super().__init__(bind=async_engine, expire_on_commit=False)
        self.sync_session = self._proxied = self._assign_proxied(
            self.sync_session_class(bind=engine, expire_on_commit=False)
        )

    @property  # type: ignore[override]
    def bind(self) -> AsyncEngine:
        return self._async_bind  # type: ignore[return-value]

    async def execute(  # type: ignore[override]
        self, statement: Any, params: Any = None, *, execution_options: Any = None, **kw: Any
    ) -> Any:
        # As AsyncSession.execute, less its check of the cursor for a pending async close
        # (a sync driver's cursor has none): the rows are buffered as there.
        options = {**(execution_options or {}), "prebuffer_rows": True}
        return self.sync_session.execute(statement, params, execution_options=options, **kw)

    async def exec(  # type: ignore[override]
        self, statement: Any, *, params: Any = None, execution_options: Any = None, **kw: Any
    ) -> Any:
        options = {**(execution_options or {}), "prebuffer_rows": True}
        return self.sync_session.exec(statement, params=params, execution_options=options, **kw)

    async def connection(self, **kw: Any) -> Any:  # type: ignore[override]
        return _DirectConnection(self.sync_session.connection(**kw))


class _DirectConnection:
    def __init__(self, conn: Connection) -> None:
        self.sync_connection = conn

    async def exec_driver_sql(self, sql: str, params: Any = None) -> Any:
        return self.sync_connection.exec_driver_sql(sql, params)


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a writer-thread transaction awaited something other than its session")


def _run_session(
    async_engine: AsyncEngine,
    engine: Engine,
    work: Callable[[AsyncSession], Coroutine[Any, Any, T]],
) -> T:
    """``Database.run_session`` on the SQLite writer thread."""
    session = WriterSession(async_engine, engine)
    try:
        result = _drive(work(session))
        with _commit_or_fail():
            _drive(session.commit())
        return result
    finally:
        _drive(session.close())  # rolls back what was not committed


# Production settings for every SQLite connection, measured with bench/events.py (a batch
# of 1,000 events writes some 3,000 random pages of indexes):
# - wal_autocheckpoint: checkpoint when the WAL reaches 16,384 pages (64 MiB at 4 KiB)
#   instead of SQLite's 1,000. At 1,000 every such batch paid a checkpoint (and its
#   fsync) in its COMMIT; now one in several does, and a page written by several batches
#   is copied back once. Readers are unaffected (the WAL index finds a page in the WAL).
# - journal_size_limit: after a checkpoint the WAL file is truncated back to 64 MiB, so
#   the disk it takes stays bounded after a burst.
# - cache_size: 32 MiB of page cache per connection instead of 2 MiB, so more of the hot
#   index pages stay in memory between batches. It grows only as pages are read; with
#   the pool's 10 connections and the writer's one that is at most some 350 MiB, on a
#   database larger than that. 64 MiB measured no better (a million events: 4,673/s
#   against 4,881/s at 32 MiB, within the noise of this machine).
# temp_store and mmap_size stay at their defaults: no large sorts or temporary tables
# run here, and mmap measured no better (and turns an I/O error into a crash).
_SQLITE_TUNING = (
    "wal_autocheckpoint=16384",
    "journal_size_limit=67108864",
    "cache_size=-32768",
)


def _sqlite_hooks(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for writers (module doc)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN out of the driver's hands; the "begin" hook below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        for pragma in _SQLITE_TUNING:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
        # A COMMIT that SQLite refused (e.g. a deferred constraint) leaves its transaction
        # open, and SQLAlchemy, having asked for the commit, does not roll back on return
        # to the pool: without this the next BEGIN on that connection would fail.
        driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)  # aiosqlite
        if driver.in_transaction:
            dbapi_connection.rollback()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


_db: Database | None = None


async def listening_connection(
    database_url: str, channel: str, callback: Callable[..., None]
) -> Any:
    """A dedicated asyncpg connection (PostgreSQL) that LISTENs on ``channel`` and calls
    ``callback(connection, pid, channel, payload)`` for each notification; close it when
    done. Notifications sent in a transaction arrive when it commits."""
    import asyncpg

    dsn = make_url(database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    await conn.add_listener(channel, callback)
    return conn


def get_db() -> Database:
    global _db
    if _db is None:
        _db = Database(get_settings())
    return _db


def use_db(database: Database | None) -> None:
    """Make ``database`` the process's database (``None``: build one from the settings on
    the next ``get_db()``). For whoever owns the connection's life: tests, tools."""
    global _db
    _db = database


async def close_db() -> None:
    global _db
    if _db is not None:
        await _db.dispose()
        _db = None


# SQLSTATEs of a transaction PostgreSQL gave up because of concurrent work, not because of
# what it asked: deadlock_detected, serialization_failure, lock_not_available.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def transient_reason(exc: DBAPIError) -> str | None:
    """Why the database refused a transaction that may well pass if tried again (a
    deadlock with concurrent transactions, a serialization failure, SQLite's write lock
    held past the busy timeout), or None for any other database error."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _TRANSIENT_SQLSTATES:
        return str(orig).splitlines()[0].split(": ", 1)[-1] if str(orig) else code
    if "database is locked" in str(orig).lower():
        return "database is locked"
    return None


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when an IntegrityError is a unique-key clash (the race we retry on)."""
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate key" in text
