"""Jobs in tests: ``run_jobs`` runs the queue in-process (the app under test has no
background workers), ``drain`` and ``run_jobs_until`` run it until a check holds, and
``listening`` listens in on events for the length of a test,
through the public jobs API.

A test declares its own kind (``jobs.JobKind("test.something", TheEventsModel)``), named
``test.*`` so that component checks can tell it from the service's, and subscribes it
with ``listening``; afterwards the event's subscribers are exactly what they were.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.settings import get_settings


@contextmanager
def listening(
    event: jobs.Event[Any], kind: jobs.JobKind[Any], *, alone: bool = False
) -> Iterator[jobs.JobKind[Any]]:
    """Subscribe ``kind`` to ``event`` meanwhile. ``alone``: the event's other subscribers
    are set aside meanwhile, so that publishing it queues the test's job and nothing else."""
    before = jobs.subscribers(event)
    if alone:
        for other in before:
            jobs.unsubscribe(event, other)
    jobs.subscribe(event, kind)
    try:
        yield kind
    finally:
        for current in jobs.subscribers(event):
            jobs.unsubscribe(event, current)
        for earlier in before:  # in their order: the order jobs are queued in
            jobs.subscribe(event, earlier)


async def run_jobs(database: Database, rounds: int = 50) -> dict[str, int]:
    """Run every due job in this process until the queue is quiet; count the outcomes."""
    queue = jobs.JobQueue(database, get_settings(), "test-worker")
    outcomes: dict[str, int] = {}
    for _ in range(rounds):
        ran, started = 0, utcnow()
        for _ in range(50):  # a round: what is due now, kind by kind as workers claim it
            claimed = await queue.claim(100, due_by=started)
            if not claimed:
                break
            ran += len(claimed)
            if jobs.is_batch_kind(claimed[0].kind):  # together, as a worker runs them
                results = await queue.run(claimed)
            else:  # one after another: a test sees the same order every time
                results = [await queue.run_one(job) for job in claimed]
            for outcome in results:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if not ran:
            break
    return outcomes


async def drain(
    database: Database, done: Callable[[], Awaitable[bool]], within: float = 15
) -> None:
    """Run due jobs (retries come due after their backoff) until ``done``; fails the test
    if that takes longer than ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, "the outbox did not settle"
        await run_jobs(database)
        await asyncio.sleep(0.05)


async def run_jobs_until(
    database: Database, check: Callable[[], Awaitable[Any]], within: float = 15.0
) -> Any:
    """Run jobs until ``check`` holds (a retry waits out its backoff or Retry-After), and
    return what it answered last: the test asserts on it, after ``within`` seconds too."""
    deadline = time.monotonic() + within
    while True:
        await run_jobs(database)
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)
