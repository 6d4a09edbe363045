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
            self._lock_conn = await self.db.engine.connect()
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

    async def _elect(self) -> None:
        while not self.is_leader:
            try:
                self.is_leader = await self._try_lead()
            except Exception:
                log.exception("leader election failed; trying again")
            if self.is_leader:
                self._schedule_all()
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
            await self._lock_conn.close()
            self._lock_conn = None
