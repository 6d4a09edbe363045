"""Background machinery of one process: job workers and the scheduler."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from heliograph import jobs
from heliograph.db import Database
from heliograph.scheduler import Scheduler
from heliograph.settings import Settings

# The cyclic collector's thresholds once a process has started: it runs when container
# allocations less deallocations pass the first number, 50,000 here instead of
# CPython's 700. A batch of 1,000 activity events allocates and frees a few hundred
# thousand dicts and tuples; at 700 the collector ran 12,600 times over 200,000 events
# (2.1 s, 5% of the time), at 50,000 three times (0.07 s). Cycles are still collected,
# only later. The older generations keep CPython's 10 and 10.
GC_THRESHOLDS = (50_000, 10, 10)


def settle_collector() -> None:
    """What a long-running process does when it has started: everything loaded so far
    lives as long as the process, so the collector never walks it again
    (``gc.freeze``; measured ~13% more events/s in bench/events.py), and it collects
    less often (``GC_THRESHOLDS``)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


log = logging.getLogger(__name__)

# Checks a component wants run once when a process starts its workers (e.g. "can a
# whisper model be loaded here?"); each logs what it found. A failing check is logged and
# never stops the process.
StartupCheck = Callable[[Settings], None]
startup_checks: list[StartupCheck] = []


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Background:
    db: Database
    settings: Settings
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    scheduler: Scheduler | None = None

    def start(self, *, workers: bool, scheduler: bool) -> None:
        if workers:
            for check in startup_checks:
                try:
                    check(self.settings)
                except Exception:
                    log.exception("start-up check %s failed", getattr(check, "__name__", check))
            self.tasks.append(
                asyncio.create_task(
                    jobs.run_worker(self.db, self.settings, worker_id(), self.stop_event)
                )
            )
        if scheduler:
            self.scheduler = Scheduler(self.db)
            self.scheduler.start()

    async def stop(self) -> None:
        self.stop_event.set()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.settings.job_lease_s)
