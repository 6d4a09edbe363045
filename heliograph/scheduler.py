"""Periodic work on APScheduler 3, run by exactly one process (the leader).

PostgreSQL: the leader holds ``pg_try_advisory_lock`` on a dedicated connection; if
it dies, the connection closes, the lock is released and another process takes over
at its next try. SQLite: one process runs everything, so it is the leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from heliograph.db import Database

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x48454C49  # "HELI"


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    seconds: float
    run: Callable[[Database], Awaitable[object]]


_tasks: dict[str, PeriodicTask] = {}


def every(seconds: float, name: str | None = None):  # type: ignore[no-untyped-def]
    """Register ``fn(db)`` to run every ``seconds`` on the leader."""

    def register(fn: Callable[[Database], Awaitable[object]]):  # type: ignore[no-untyped-def]
        task = PeriodicTask(name or f"{fn.__module__}.{fn.__name__}", seconds, fn)
        _tasks[task.name] = task
        return fn

    return register


def periodic_tasks() -> list[PeriodicTask]:
    return list(_tasks.values())


class Scheduler:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.is_leader = False
        self._lock_conn = None
        self._elect_task: asyncio.Task[None] | None = None

    async def _try_lead(self) -> bool:
        if self.db.is_sqlite:
            return True
        if self._lock_conn is None:
            # Autocommit: holding the lock must not hold a transaction open for hours.
            self._lock_conn = await self.db.engine.connect()
            await self._lock_conn.execution_options(isolation_level="AUTOCOMMIT")
        result = await self._lock_conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK_KEY}
        )
        return bool(result.scalar())

    async def _run(self, task: PeriodicTask) -> None:
        try:
            await task.run(self.db)
        except Exception:
            log.exception("periodic task %s failed", task.name)

    def _schedule_all(self) -> None:
        if self.scheduler.running:
            self.scheduler.resume()
            return
        for task in _tasks.values():
            self.scheduler.add_job(
                self._run,
                "interval",
                seconds=task.seconds,
                args=[task],
                id=task.name,
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )
        self.scheduler.start()
        log.info("this process leads the scheduler (%d periodic tasks)", len(_tasks))

    async def _still_leading(self) -> bool:
        if self.db.is_sqlite or self._lock_conn is None:
            return True
        try:
            await self._lock_conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def _elect(self) -> None:
        """Try for the lock every 15 s; once leading, check every 15 s that we still are."""
        while True:
            if not self.is_leader:
                try:
                    self.is_leader = await self._try_lead()
                except Exception:
                    log.exception("leader election failed; trying again")
                if self.is_leader:
                    self._schedule_all()
            elif not await self._still_leading():
                # The lock went with the connection: stop, and stand for election again.
                log.warning("lost the scheduler lock; stopping periodic work")
                self.scheduler.pause()
                self.is_leader = False
                self._lock_conn = None
            if self.db.is_sqlite and self.is_leader:
                return
            await asyncio.sleep(15)

    def start(self) -> None:
        self._elect_task = asyncio.create_task(self._elect())

    async def stop(self) -> None:
        if self._elect_task is not None:
            self._elect_task.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._lock_conn is not None:
            # Closing would only return the connection to the pool, lock and all: unlock,
            # then invalidate so the server session really ends.
            try:
                if self.is_leader:
                    await self._lock_conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_LOCK_KEY}
                    )
            finally:
                await self._lock_conn.invalidate()
                await self._lock_conn.close()
                self._lock_conn = None
                self.is_leader = False
