"""The outbox delivers its due replies as one batch (issue #17): every conversation's
replies reach the sandbox's receiver in the order written, a reply that cannot go out
fails alone, and what became of the batch is written in one transaction, however many
replies it holds."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlmodel import col

from crm_core.models import Identity
from heliograph import jobs
from heliograph.db import Database
from heliograph.models import Job
from inbox import outbox
from inbox.bus import DELIVER_REPLY, MessageRef
from inbox.conversations import reply
from inbox.models import Message
from tests.utils.db import rows
from tests.utils.factories import receive
from tests.utils.jobs import run_jobs
from tests.utils.sandbox import API_ENV, Receiver

SANDBOX_ENV = API_ENV  # the provider sandbox checks reply signatures with the test secret


async def conversation_of(database: Database, customer: str, *, opted_out: bool = False) -> int:
    """A conversation with ``customer`` on the API channel (whose jobs have run)."""
    conv = await receive(database, f"{customer}-m1", customer)
    if opted_out:
        async with database.session() as session:
            ident = (
                await session.execute(select(Identity).where(col(Identity.external_id) == customer))
            ).scalar_one()
            ident.opted_out = True
            await session.commit()
    await run_jobs(database)
    return conv.conversation_id


async def queue_replies(database: Database, replies: list[tuple[int, str]]) -> list[int]:
    """``(conversation id, text)`` replies queued in one transaction: due together."""
    async with database.session() as session:
        written = [await reply(session, c, text, author_id=None) for c, text in replies]
        await session.commit()
    return [m.id for m in written]  # type: ignore[misc]


async def outcome(database: Database, message_ids: list[int]) -> list[tuple[str, str | None]]:
    """Each reply's ``(delivery_status, delivery_error)``, in the order given."""
    found = {m.id: m for m in await rows(database, Message, Message.id.in_(message_ids))}  # type: ignore[union-attr]
    return [(found[i].delivery_status, found[i].delivery_error) for i in message_ids]


async def jobs_of(database: Database, message_ids: list[int]) -> list[tuple[str, int]]:
    """Each reply's outbox job as ``(status, attempts)``, in the order given."""
    keys = [f"deliver:{i}" for i in message_ids]
    found = {j.dedupe_key: j for j in await rows(database, Job, Job.dedupe_key.in_(keys))}  # type: ignore[union-attr]
    return [(found[k].status, found[k].attempts) for k in keys]


async def texts_to(receiver: Receiver, conversation_id: int) -> list[str]:
    return [r["text"] for r in await receiver.replies() if r["conversation_id"] == conversation_id]


async def test_a_batch_delivers_each_conversation_in_order_and_fails_only_the_opted_out(
    database: Database, receiver: Receiver
) -> None:
    ann, bob = await conversation_of(database, "ann"), await conversation_of(database, "bob")
    stop = await conversation_of(database, "stopper", opted_out=True)
    a1, b1, s1, a2, b2 = await queue_replies(
        database, [(ann, "a1"), (bob, "b1"), (stop, "offer"), (ann, "a2"), (bob, "b2")]
    )
    await run_jobs(database)

    assert await texts_to(receiver, ann) == ["a1", "a2"]
    assert await texts_to(receiver, bob) == ["b1", "b2"]
    assert await texts_to(receiver, stop) == []
    assert await outcome(database, [a1, a2, b1, b2]) == [("delivered", None)] * 4
    ((status, error),) = await outcome(database, [s1])
    assert status == "failed" and "opted out" in (error or "")
    assert await jobs_of(database, [a1, a2, b1, b2, s1]) == [("done", 1)] * 4 + [("dead", 1)]


async def test_a_conversations_replies_in_one_batch_leave_in_one_run(
    database: Database, receiver: Receiver
) -> None:
    """The later replies do not wait for the earlier ones of the same batch: those went
    out before them, in their lane."""
    conv = await conversation_of(database, "cust-7")
    written = await queue_replies(database, [(conv, "first"), (conv, "second"), (conv, "third")])
    await run_jobs(database)  # a deferred reply would wait a second: not in this run
    assert await texts_to(receiver, conv) == ["first", "second", "third"]
    assert await outcome(database, written) == [("delivered", None)] * 3
    assert await jobs_of(database, written) == [("done", 1)] * 3  # none was deferred


async def test_a_reply_is_sent_once_whatever_jobs_name_it(
    database: Database, receiver: Receiver
) -> None:
    conv = await conversation_of(database, "cust-8")
    (sent,) = await queue_replies(database, [(conv, "once")])
    await run_jobs(database)
    (twice,) = await queue_replies(database, [(conv, "only once too")])
    async with database.session() as session:  # a replay of the first, another of the second
        for message_id in (sent, twice):
            await jobs.enqueue(session, DELIVER_REPLY, MessageRef(message_id=message_id))
        await session.commit()
    await run_jobs(database)
    assert await texts_to(receiver, conv) == ["once", "only once too"]
    assert await outcome(database, [sent, twice]) == [("delivered", None)] * 2
    statuses = [j.status for j in await rows(database, Job, Job.kind == DELIVER_REPLY.name)]
    assert statuses == ["done"] * 4


@contextmanager
def transactions_writing(table: str) -> Iterator[list[set[str]]]:
    """Meanwhile, the tables updated by each committed transaction that updated ``table``
    (on any engine of this process)."""
    committed: list[set[str]] = []
    updated = re.compile(r"\s*UPDATE\s+(\w+)", re.IGNORECASE)

    def on_statement(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        found = updated.match(statement)
        if found:
            conn.info.setdefault("test_updated", set()).add(found.group(1).lower())

    def on_commit(conn: Any) -> None:
        tables = conn.info.pop("test_updated", set())
        if table in tables:
            committed.append(tables)

    def on_rollback(conn: Any) -> None:
        conn.info.pop("test_updated", None)

    hooks: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", on_statement),
        ("commit", on_commit),
        ("rollback", on_rollback),
    ]
    for name, hook in hooks:
        event.listen(Engine, name, hook)
    try:
        yield committed
    finally:
        for name, hook in hooks:
            event.remove(Engine, name, hook)


@pytest.mark.parametrize("replies", [2, 6])
async def test_a_batch_is_recorded_in_one_transaction_with_its_jobs(
    database: Database, receiver: Receiver, replies: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "EARLY_RECORD_S", 60.0)  # no batch here is that long
    conversations = [await conversation_of(database, f"cust-{n}") for n in range(3)]
    written = await queue_replies(
        database, [(conversations[n % 3], f"reply {n}") for n in range(replies)]
    )
    with transactions_writing("message") as committed:
        await run_jobs(database)
    assert await outcome(database, written) == [("delivered", None)] * replies
    assert committed == [{"message", "job"}]  # the replies' marks and their jobs' completion


async def test_a_long_batch_writes_its_sent_replies_early_and_each_once(
    database: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch still sending writes down what it has sent as it goes (a provider's status
    callback must find the reply by its id); the end of the batch writes the rest and
    completes the jobs, and nothing is sent or recorded twice."""
    monkeypatch.setattr(outbox, "EARLY_RECORD_S", 0.0)  # every pause is "long"
    conversations = [await conversation_of(database, f"cust-long-{n}") for n in range(3)]
    written = await queue_replies(
        database, [(conversations[n % 3], f"long reply {n}") for n in range(9)]
    )
    with transactions_writing("message") as committed:
        await run_jobs(database)
    assert await outcome(database, written) == [("delivered", None)] * 9
    assert await jobs_of(database, written) == [("done", 1)] * 9
    for n, conv in enumerate(conversations):
        assert await texts_to(receiver, conv) == [f"long reply {i}" for i in range(n, 9, 3)]
    assert all("message" in tables for tables in committed)
