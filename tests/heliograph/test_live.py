"""heliograph.live: events after a commit reach every subscriber of every process (LISTEN/
NOTIFY on PostgreSQL, in-process on SQLite); a slow subscriber is dropped, never waited for."""

from __future__ import annotations

import asyncio

import pytest

from heliograph import live
from heliograph.db import Database
from tests.utils.factories import receive


async def _next(subscription: live.Subscription) -> live.Event:
    return await asyncio.wait_for(subscription.get(), 5)


async def test_in_process_events_and_a_dropped_slow_subscriber() -> None:
    hub = live.Hub()
    slow, quick = hub.subscribe(), hub.subscribe()
    for n in range(live.QUEUE_SIZE + 5):  # never blocks, never raises
        hub.publish("inbox", {"conversation_id": n})
        assert await _next(quick) == ("inbox", {"conversation_id": n})
    assert slow.dropped and hub.subscribers == 1
    assert [event async for event in slow] == [(live.RELOAD, {})]
    quick.close()
    assert hub.subscribers == 0


async def test_after_commit_publishes_once_committed(database: Database) -> None:
    subscription = live.subscribe()
    try:
        async with database.session() as session:
            live.after_commit(session, "conversation-1", {"conversation_id": 1})
            await session.rollback()  # dropped with the transaction
        async with database.session() as session:
            live.after_commit(session, "conversation-2", {"conversation_id": 2})
            assert subscription.queue.empty()  # not before the commit
            await session.commit()
        assert await _next(subscription) == ("conversation-2", {"conversation_id": 2})
        assert subscription.queue.empty()
    finally:
        subscription.close()


async def test_a_stored_message_is_published_and_a_slow_page_never_blocks_ingest(
    database: Database,
) -> None:
    slow, page = live.subscribe(), live.subscribe()
    try:
        for n in range(live.QUEUE_SIZE):
            slow.put(("filler", {"n": n}))
        await asyncio.wait_for(receive(database, "live-1"), 30)
        result = await asyncio.wait_for(receive(database, "live-2"), 30)
        cid = result.conversation_id
        seen = [await _next(page) for _ in range(4)]
        assert ("inbox", {"conversation_id": cid}) in seen
        assert (f"conversation-{cid}", {"conversation_id": cid}) in seen
        assert slow.dropped
    finally:
        slow.close()
        page.close()


async def test_postgres_two_processes_hear_each_other(pg_database: Database) -> None:
    a, b = live.Hub(), live.Hub()  # two processes' hubs, each with its own LISTEN connection
    await a.start(pg_database.url)
    await b.start(pg_database.url)
    try:
        heard_by_b, heard_by_a = b.subscribe(), a.subscribe()
        a.publish("conversation-7", {"conversation_id": 7})
        assert await _next(heard_by_b) == ("conversation-7", {"conversation_id": 7})
        assert await _next(heard_by_a) == ("conversation-7", {"conversation_id": 7})
        a.publish("big", {"text": "x" * 10_000})  # over NOTIFY's limit: sent without data
        assert await _next(heard_by_b) == ("big", {})
        a.publish("conversation-8", {"conversation_id": 8})
        await a.stop()  # at once: what a published before stopping still goes out
        assert await _next(heard_by_b) == ("conversation-8", {"conversation_id": 8})
    finally:
        await a.stop()
        await b.stop()


def test_sqlite_needs_no_listener() -> None:
    hub = live.Hub()
    asyncio.run(hub.start("sqlite+aiosqlite:///x.db"))
    assert hub._conn is None


@pytest.mark.parametrize("event", ["inbox"])
def test_publish_outside_a_loop_without_subscribers_is_harmless(event: str) -> None:
    live.Hub().publish(event, {})
