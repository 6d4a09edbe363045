"""Background machinery of one process: job workers and the scheduler."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from heliograph import jobs
from heliograph.db import Database
from heliograph.scheduler import Scheduler
from heliograph.settings import Settings

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
