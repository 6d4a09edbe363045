"""Live events for the web app (issue #16): what changed, pushed to every open page.

``publish(event, data)`` is called right after the commit that changed what a page shows
(an event name such as ``inbox``, ``conversation-7``, ``typing-7`` and a small dict of ids,
never bodies). Every subscriber in every process hears it:

- PostgreSQL: one dedicated asyncpg connection per process LISTENs on the channel
  ``heliograph_live``; ``publish`` sends ``pg_notify`` on that connection (payload JSON,
  under 8000 bytes) and the notification comes back to every listening process, this one
  included, which hands it to its subscribers;
- SQLite (one process), or before ``start``: straight to this process's subscribers.

``subscribe()`` gives one bounded queue per browser connection. Publishers never wait: a
subscriber whose queue is full is dropped, and its iterator ends with the ``reload``
event so the page can reload itself. ``publish`` never raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import make_url
from sqlalchemy.orm import Session

from heliograph.db import listening_connection

log = logging.getLogger(__name__)

CHANNEL = "heliograph_live"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
QUEUE_SIZE = 256  # events one browser may fall behind before it is told to reload
RELOAD = "reload"
STOP_WAIT_S = 5.0  # how long stop() waits for NOTIFYs already on their way

Event = tuple[str, dict[str, Any]]


@dataclass(eq=False)
class Subscription:
    """One browser connection's events. Iterate it; it ends after ``reload`` when dropped."""

    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False
    hub: Hub | None = None

    def put(self, event: Event) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True  # a slow browser: it reloads, we never wait for it
            if self.hub is not None:
                self.hub.unsubscribe(self)

    async def get(self) -> Event:
        if self.dropped:  # what it missed is lost anyway: say reload now
            while not self.queue.empty():
                self.queue.get_nowait()
            return (RELOAD, {})
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            event = await self.get()
            yield event
            if event[0] == RELOAD:
                return

    def close(self) -> None:
        if self.hub is not None:
            self.hub.unsubscribe(self)


class Hub:
    """A process's live events on one database (``start``/``stop`` from the app lifespan)."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._conn: Any = None  # asyncpg connection that LISTENs (PostgreSQL only)
        self._send_lock: asyncio.Lock | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self, database_url: str) -> None:
        """Listen for other processes' events when the database is PostgreSQL."""
        url = make_url(database_url)
        if not url.drivername.startswith("postgresql") or self._conn is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()
        self._conn = await listening_connection(database_url, CHANNEL, self._on_notify)

    async def stop(self) -> None:
        """Send what was published, then stop listening. A NOTIFY still on the wire is
        waited for (briefly), never cancelled halfway: asyncpg refuses a second operation
        on a connection while one is in progress."""
        pending = list(self._pending)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=STOP_WAIT_S)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        conn = self._conn
        if conn is None:
            return
        assert self._send_lock is not None
        async with self._send_lock:  # no NOTIFY between here and close
            self._conn = None
            try:
                await conn.remove_listener(CHANNEL, self._on_notify)
            except Exception:
                log.warning("live: could not stop listening; connection dropped", exc_info=True)
                conn.terminate()
                return
            await conn.close()

    def subscribe(self) -> Subscription:
        self._loop = asyncio.get_running_loop()
        subscription = Subscription(hub=self)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, event: str, data: dict[str, Any] | None = None) -> None:
        """Tell every subscriber in every process; never waits, never raises."""
        data = data or {}
        try:
            loop = _running_loop()
            if loop is None:  # a thread (the SQLite writer's commit): over to the loop
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self.publish, event, data)
                return
            if self._conn is None:
                self.deliver(event, data)
                return
            payload = json.dumps({"event": event, "data": data}, default=str)
            if len(payload.encode()) > MAX_PAYLOAD:
                log.warning("live event %s: payload too large, sent without data", event)
                payload = json.dumps({"event": event, "data": {}})
            task = loop.create_task(self._notify(payload))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        except Exception:
            log.warning("live event %s not published", event, exc_info=True)

    async def _notify(self, payload: str) -> None:
        assert self._send_lock is not None
        try:
            async with self._send_lock:
                if self._conn is not None:
                    await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        except Exception:
            log.warning("live NOTIFY failed", exc_info=True)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            self.deliver(str(message["event"]), dict(message.get("data") or {}))
        except Exception:
            log.warning("live: unreadable notification %r", payload[:200], exc_info=True)

    def deliver(self, event: str, data: dict[str, Any]) -> None:
        """Hand one event to this process's subscribers (each gets its own copy)."""
        for subscription in list(self._subscribers):
            subscription.put((event, dict(data)))


hub = Hub()


def publish(event: str, data: dict[str, Any] | None = None) -> None:
    """After a commit: tell every open page in every process that ``event`` happened."""
    hub.publish(event, data)


def subscribe() -> Subscription:
    return hub.subscribe()


async def start(database_url: str) -> None:
    await hub.start(database_url)


async def stop() -> None:
    await hub.stop()


def after_commit(session: Any, event: str, data: dict[str, Any] | None = None) -> None:
    """``publish(event, data)`` once ``session`` (async or sync) commits; dropped on a
    rollback. For use cases that run in their caller's transaction."""
    sync = getattr(session, "sync_session", session)
    sync.info.setdefault(_PENDING, []).append((event, data or {}))


_PENDING = "heliograph_live_pending"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@sa_event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    for name, data in session.info.pop(_PENDING, ()):
        publish(name, data)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if not session.in_transaction():
        session.info.pop(_PENDING, None)
