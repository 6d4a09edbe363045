"""Periodic work runs in exactly one process: the PostgreSQL advisory lock elects a leader."""

from __future__ import annotations

import asyncio

from heliograph.db import Database
from heliograph.scheduler import Scheduler
from heliograph.settings import get_settings


async def test_only_one_process_leads_on_postgres(pg_database: Database) -> None:
    other = Database(get_settings())  # a second process's engine and connections
    first, second = Scheduler(pg_database), Scheduler(other)
    try:
        first.start()
        second.start()
        await asyncio.sleep(0.5)
        assert [first.is_leader, second.is_leader].count(True) == 1
        leader, follower = (first, second) if first.is_leader else (second, first)
        # The leader goes away: its connection closes and the lock is free for the other.
        await leader.stop()
        assert await follower._try_lead() is True
    finally:
        await first.stop()
        await second.stop()
        await other.dispose()


async def test_sqlite_process_always_leads(sqlite_database: Database) -> None:
    scheduler = Scheduler(sqlite_database)
    scheduler.start()
    await asyncio.sleep(0.2)
    try:
        assert scheduler.is_leader and scheduler.scheduler.running
    finally:
        await scheduler.stop()
