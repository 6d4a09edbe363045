"""Listening in on events for the length of a test, through the public jobs API.

A test declares its own kind (``jobs.JobKind("test.something", TheEventsModel)``), named
``test.*`` so that component checks can tell it from the service's, and subscribes it
with ``listening``; afterwards the event's subscribers are exactly what they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from heliograph import jobs


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
