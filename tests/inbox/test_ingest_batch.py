"""Group commit of inbound items (inbox/ingest_batch.py): concurrent ``intake.receive`` calls
share one transaction, and each caller still hears exactly what happened to its item."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, text

from crm_core.identity import SenderProfile, contacts_of
from crm_core.models import Customer, Identity
from heliograph import jobs
from heliograph.db import Database, WriteLock
from heliograph.models import Job
from heliograph.settings import get_settings
from inbox import intake
from inbox.bus import MESSAGE_RECEIVED
from inbox.ingest import AcceptResult, InboundMessage, store_batch
from inbox.ingest_batch import CommitFailed, writer_for
from inbox.models import Conversation, Message, Note
from tests.utils.db import count
from tests.utils.factories import inbound, receive, store


async def _texts(database: Database) -> Counter[str]:
    async with database.read_session() as session:
        return Counter((await session.execute(select(Message.text))).scalars().all())


async def _together(
    database: Database, *msgs: InboundMessage, outcome: str = "batches"
) -> list[Any]:
    """Submit every message at once, so that they land in one batch; checks they did, and
    what became of it (``batches``: stored as one, ``fallbacks``: one by one, ``failures``)."""
    writer = writer_for(database)
    kinds = ("batches", "fallbacks", "failures")
    before = {k: getattr(writer, k) for k in kinds}
    answers = await asyncio.gather(*(store(database, m) for m in msgs), return_exceptions=True)
    after = {k: getattr(writer, k) for k in kinds}
    assert after == {**before, outcome: before[outcome] + 1}, "the messages shared one batch"
    return list(answers)


async def test_a_batch_with_replays_stores_each_message_once(database: Database) -> None:
    first = await receive(database, "m1", "cust-1", text="first")

    again, second, second_again, third = await _together(
        database,
        inbound("m1", "cust-1", text="first, replayed"),
        inbound("m2", "cust-1", text="second"),
        inbound("m2", "cust-1", text="second, replayed in the same batch"),
        inbound("m3", "cust-2", text="third"),
    )

    assert again.duplicate and again.message_id == first.message_id
    assert not second.duplicate and second.conversation_id == first.conversation_id
    assert second_again.duplicate and second_again.message_id == second.message_id
    assert not third.duplicate and third.new_conversation
    assert third.customer_id != first.customer_id
    assert await _texts(database) == Counter(["first", "second", "third"])
    # Follow-up work: each stored message once per subscriber, nothing for the replays.
    async with database.read_session() as session:
        payloads = (await session.execute(select(Job.kind, Job.payload))).all()
    received = [p["message_id"] for kind, p in payloads if kind == "routing.route"]
    assert sorted(received) == sorted([first.message_id, second.message_id, third.message_id])
    assert len(payloads) == 3 * len(jobs.subscribers(MESSAGE_RECEIVED))


async def test_two_first_messages_from_one_new_sender_in_a_batch_make_one_customer(
    database: Database,
) -> None:
    email = "rosa@example.com"
    one, two, elsewhere = await _together(
        database,
        inbound("b1", "cust-new", text="part 1", name="Rosa Costa", email=email),
        inbound("b2", "cust-new", text="part 2", name="Rosa Costa", email=email),
        # The same person on another channel, giving the same email: the same customer.
        InboundMessage(
            channel="sms",
            provider_message_id="SM1",
            sender=SenderProfile(channel="sms", external_id="+447700900123", email=email),
            text="it's Rosa again",
        ),
    )

    assert one.customer_id == two.customer_id == elsewhere.customer_id
    assert one.conversation_id == two.conversation_id != elsewhere.conversation_id
    assert one.new_conversation and not two.new_conversation and elsewhere.new_conversation
    assert await count(database, Customer) == 1
    assert await count(database, Identity) == 2
    assert await count(database, Conversation) == 2
    async with database.read_session() as session:
        customer = await session.get(Customer, one.customer_id)
        contacts = [(c.kind, c.value) for c in await contacts_of(session, one.customer_id)]
        events = [
            p
            for kind, p in (await session.execute(select(Job.kind, Job.payload))).all()
            if kind == "routing.route"
        ]
    assert customer is not None and customer.display_name == "Rosa Costa"
    assert contacts == [("email", email)]
    flags = {e["message_id"]: e["new_conversation"] for e in events}
    assert flags == {one.message_id: True, two.message_id: False, elsewhere.message_id: True}


async def test_one_bad_message_fails_alone_and_the_rest_of_its_batch_is_stored(
    database: Database,
) -> None:
    bad = inbound("bad-1", "cust-2", text="unstorable")
    bad.raw = {"not json": {1, 2}}  # a set: the JSON column cannot store it

    good, failed, other = await _together(
        database,
        inbound("ok-1", "cust-1", text="fine"),
        bad,
        inbound("ok-2", "cust-3", text="also fine"),
        outcome="fallbacks",
    )

    assert isinstance(good, AcceptResult) and isinstance(other, AcceptResult)
    assert isinstance(failed, Exception) and "not JSON serializable" in str(failed)
    assert await _texts(database) == Counter(["fine", "also fine"])
    assert (await receive(database, "ok-1", "cust-1")).duplicate  # on disk, once


async def test_a_cancelled_caller_does_not_take_its_message_out(database: Database) -> None:
    waiting = asyncio.create_task(store(database, inbound("c1", text="are you there?")))
    await asyncio.sleep(0)  # queued, and the batch that takes it is on its way
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await writer_for(database).idle()

    assert await _texts(database) == Counter(["are you there?"])
    retry = await receive(database, "c1", text="are you there?")  # the provider retries
    assert retry.duplicate
    assert await count(database, Message) == 1


async def _poison_at_commit(database: Database) -> None:
    """A real constraint that is only checked at COMMIT and fails for text 'poison'."""
    if database.is_sqlite:
        statements = [
            "CREATE TABLE poison (ref INTEGER REFERENCES customer (id) "
            "DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TRIGGER poison_in AFTER INSERT ON message WHEN NEW.text = 'poison' "
            "BEGIN INSERT INTO poison (ref) VALUES (-1); END",
        ]
    else:
        statements = [
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'poisoned message %', NEW.id; END $$",
            "CREATE CONSTRAINT TRIGGER poison_in AFTER INSERT ON message "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.text = 'poison') "
            "EXECUTE FUNCTION poison()",
        ]
    async with database.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def test_a_failed_commit_answers_an_error_to_every_message_of_the_batch(
    database: Database,
) -> None:
    await _poison_at_commit(database)

    answers = await _together(
        database,
        inbound("p1", "cust-1", text="fine"),
        inbound("p2", "cust-2", text="poison"),
        inbound("p3", "cust-3", text="also fine"),
        outcome="failures",
    )

    assert all(isinstance(a, CommitFailed) for a in answers), answers
    assert await count(database, Message) == 0
    assert await count(database, Job) == 0
    # Nothing was acknowledged, so the provider retries; alone, the good ones are stored.
    retried = await receive(database, "p1", "cust-1", text="fine")
    assert not retried.duplicate
    assert await _texts(database) == Counter(["fine"])


async def test_a_webhook_answers_an_error_not_200_when_the_commit_fails(
    client: Any, database: Database
) -> None:
    from tests.utils.signing import inbound_body, signed_headers

    await _poison_at_commit(database)
    body = inbound_body("w1", "cust-1", "poison")
    response = await client.post("/api/v1/inbound", content=body, headers=signed_headers(body))
    assert response.status_code == 503, response.text
    assert "not stored" in response.json()["error"]
    assert await count(database, Message) == 0


async def test_requests_go_ahead_of_background_writers_but_never_starve_them() -> None:
    lock = WriteLock()
    order: list[str] = []

    async def job(name: str) -> None:
        async with lock.hold():
            order.append(name)
            await asyncio.sleep(0)

    async def batches() -> None:  # the ingest writer: one batch after the other
        for name in ("batch1", "batch2"):
            async with lock.hold(priority=True):
                order.append(name)
                await asyncio.sleep(0)

    await lock.acquire()  # someone is writing; everybody else queues
    waiting = [asyncio.create_task(job(f"job{i}")) for i in range(3)]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(batches()))
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(*waiting)

    # The batch overtakes the queued jobs; the next batch waits for one job, not for all.
    assert order == ["batch1", "job0", "batch2", "job1", "job2"]


class _Count(jobs.Payload):
    n: int


_COUNT = jobs.JobKind("test.count", _Count)


async def test_background_jobs_progress_while_webhooks_keep_arriving(
    sqlite_database: Database,
) -> None:
    done: list[int] = []

    @jobs.handler(_COUNT)
    async def count(payload: _Count) -> None:
        done.append(payload.n)

    async with sqlite_database.session() as session:
        await jobs.enqueue_many(session, [(_COUNT, _Count(n=n), None) for n in range(20)])
        await session.commit()
    stop = asyncio.Event()
    worker = asyncio.create_task(
        jobs.run_worker(sqlite_database, get_settings(), "test-worker", stop)
    )
    try:
        for _ in range(3000):  # constant foreground load for up to a minute
            jobs.foreground_active()
            if len(done) == 20:
                break
            await asyncio.sleep(0.02)
        assert jobs.under_load()
    finally:
        stop.set()
        await worker
    assert sorted(done) == list(range(20))


async def _event_of(database: Database, message_id: int) -> dict[str, Any]:
    async with database.read_session() as session:
        payloads = (
            await session.execute(select(Job.payload).where(Job.kind == "routing.route"))
        ).scalars()
        return next(p for p in payloads if p["message_id"] == message_id)


async def test_a_reopened_conversation_is_announced_as_reopened_on_both_paths(
    database: Database,
) -> None:
    """In a group commit and as a batch of one in its own transaction (the fallback)."""
    from inbox.conversations import set_status

    first = await receive(database, "r1", "cust-1")
    for n, path in enumerate(("group commit", "batch of one")):
        async with database.session() as session:
            await set_status(session, first.conversation_id, "resolved")
            await session.commit()
        msg = inbound(f"r{n + 2}", "cust-1", text="one more thing")
        if path == "group commit":
            again = await store(database, msg)
        else:
            (again,) = await database.run_transaction(lambda conn, m=msg: store_batch(conn, [m]))
        assert isinstance(again, AcceptResult)
        assert again.conversation_id == first.conversation_id and not again.new_conversation
        event = await _event_of(database, again.message_id)
        assert (event["reopened"], event["new_conversation"]) == (True, False), path


async def test_one_receive_stores_messages_consent_notes_edits_and_statuses_in_one_batch(
    database: Database,
) -> None:
    """What one webhook hands the intake shares one transaction, SMS consent included."""
    sent = await receive(database, "s0", "+447700900001", channel="sms")
    async with database.session() as session:  # a reply of ours the provider reports on
        reply = Message(
            conversation_id=sent.conversation_id,
            customer_id=sent.customer_id,
            channel="sms",
            direction="out",
            author_type="agent",
            text="on its way",
            external_id="SM-out-1",
            delivery_status="sent",
        )
        session.add(reply)
        await session.commit()
    stop = inbound("s1", "+447700900001", text="STOP", channel="sms")
    stop.consent = True
    apart = inbound("e1", "unverified:eve@example.com", text="hi", channel="email")
    apart.unverified_note = "Unverified sender: dkim=fail."
    writer = writer_for(database)
    batches = writer.batches

    outcome = await intake.receive(
        [
            stop,
            intake.InboundEdit("sms", "s1", "STOP please"),
            intake.InboundEdit("sms", "never-seen", "?"),
            intake.StatusUpdate("sms", "SM-out-1", "delivered"),
            intake.StatusUpdate("sms", "SM-unknown", "read"),
            apart,
        ],
        ignored=1,
    )

    assert writer.batches == batches + 1
    assert outcome.stored == 2 and outcome.duplicates == 0
    assert outcome.edited == [outcome.accepted[0].message_id] and outcome.ignored == 2
    assert outcome.statuses_applied == 1 and outcome.unknown_statuses == ["SM-unknown"]
    async with database.read_session() as session:
        identity = (
            await session.execute(select(Identity).where(Identity.external_id == "+447700900001"))
        ).scalar_one()
        edited = await session.get(Message, outcome.accepted[0].message_id)
        delivered = await session.get(Message, reply.id)
        marked = await session.get(Conversation, outcome.accepted[1].conversation_id)
        notes = (await session.execute(select(Note.text, Note.author_id))).all()
    assert identity.opted_out
    assert edited is not None and edited.text == "STOP please"
    assert edited.raw is not None and edited.raw["edits"][0]["text"] == "STOP"
    assert delivered is not None and delivered.delivery_status == "delivered"
    assert marked is not None and marked.unverified_sender
    assert notes == [("Unverified sender: dkim=fail.", None)]

    # A replay changes nothing: no second opt-out after a START, no second note.
    start = inbound("s2", "+447700900001", text="START", channel="sms")
    start.consent = False
    await intake.receive([start])
    replayed = await intake.receive([stop, apart])
    assert replayed.duplicates == 2
    async with database.read_session() as session:
        opted_out = (
            await session.execute(
                select(Identity.opted_out).where(Identity.external_id == "+447700900001")
            )
        ).scalar_one()
        assert not opted_out
        assert len((await session.execute(select(Note.id))).all()) == 1
