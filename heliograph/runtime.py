"""Background machinery of one process: job workers and the scheduler."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field

from heliograph import jobs
from heliograph.db import Database
from heliograph.scheduler import Scheduler
from heliograph.settings import Settings

log = logging.getLogger(__name__)


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
