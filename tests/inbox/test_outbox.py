"""Replies leave through the outbox to a real HTTP receiver (the sandbox, in its own process):
signed, retried through failures, honouring Retry-After, in order, and dead when hopeless."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import Identity
from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import reply
from inbox.models import Message
from tests.utils.factories import member_with_token, receive
from tests.utils.jobs import run_jobs
from tests.utils.processes import free_port
from tests.utils.sandbox import API_ENV, Receiver

# For tests where the database engine plays no part: one run, on SQLite.
ENGINE_NEUTRAL = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


SANDBOX_ENV = API_ENV  # the provider sandbox checks reply signatures with the test secret


async def queue_reply(database: Database, conversation_id: int, text: str) -> int:
    async with database.session() as session:
        message = await reply(session, conversation_id, text, author_id=None)
        await session.commit()
    assert message.id is not None
    return message.id


async def message(database: Database, message_id: int) -> Message:
    async with database.read_session() as session:
        found = await session.get(Message, message_id)
    assert found is not None
    return found


async def deliver_job(database: Database, message_id: int) -> Job:
    async with database.read_session() as session:
        return (
            await session.execute(select(Job).where(Job.dedupe_key == f"deliver:{message_id}"))
        ).scalar_one()


async def work_until(database: Database, done: Callable[[], Any], within_s: float = 10.0) -> None:
    """Run due jobs (as a worker would) until ``done()`` is true."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await run_jobs(database)
        if await done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not get there in time")


async def test_a_reply_reaches_the_receiver_signed(database: Database, receiver: Receiver) -> None:
    conv = await receive(database, "m1", "cust-7")
    message_id = await queue_reply(database, conv.conversation_id, "Your parcel left today")
    assert (await run_jobs(database)).get("done", 0) >= 1

    sent = await message(database, message_id)
    assert sent.delivery_status == "delivered" and sent.delivery_error is None
    assert sent.sent_at is not None
    # The sandbox answers 403 to a body whose signature does not match, so this one did.
    assert await receiver.replies() == [
        {
            "conversation_id": conv.conversation_id,
            "message_id": message_id,
            "recipient": {"id": "cust-7"},
            "text": "Your parcel left today",
        }
    ]
    await run_jobs(database)  # nothing is due: the same reply never leaves twice
    assert len(await receiver.replies()) == 1


async def test_a_receiver_that_fails_then_recovers_gets_the_reply_once(
    database: Database, receiver: Receiver
) -> None:
    conv = await receive(database, "m1")
    await receiver.fail("500", seconds=60)
    message_id = await queue_reply(database, conv.conversation_id, "retry me")
    await run_jobs(database)
    waiting = await message(database, message_id)
    assert waiting.delivery_status == "queued"
    assert waiting.delivery_error == "api answered 500"
    await receiver.recover()

    async def delivered() -> bool:
        return (await message(database, message_id)).delivery_status == "delivered"

    await work_until(database, delivered)
    assert [r["text"] for r in await receiver.replies()] == ["retry me"]
    assert (await deliver_job(database, message_id)).attempts >= 2


async def test_retry_after_is_honoured(database: Database, receiver: Receiver) -> None:
    conv = await receive(database, "m1")
    await receiver.fail("429", seconds=60, retry_after=7)
    message_id = await queue_reply(database, conv.conversation_id, "slow down")
    before = utcnow()
    await run_jobs(database)
    after = utcnow()
    job = await deliver_job(database, message_id)
    assert (job.status, job.attempts) == ("pending", 1)
    delay = timedelta(seconds=7)  # what Retry-After said, not our own backoff
    assert before + delay <= job.run_at <= after + delay
    assert (await message(database, message_id)).delivery_error == "api answered 429"
    await run_jobs(database)
    assert (await deliver_job(database, message_id)).attempts == 1  # not before its time

    await receiver.recover()
    async with database.session() as session:
        due = await session.get(Job, job.id)
        assert due is not None
        due.run_at = utcnow()
        await session.commit()
    await run_jobs(database)
    assert (await message(database, message_id)).delivery_status == "delivered"
    assert [r["text"] for r in await receiver.replies()] == ["slow down"]


async def test_replies_leave_in_the_order_written(database: Database, receiver: Receiver) -> None:
    conv = await receive(database, "m1")
    await receiver.fail("500", seconds=60)
    first = await queue_reply(database, conv.conversation_id, "first")
    second = await queue_reply(database, conv.conversation_id, "second")
    await run_jobs(database)
    failed_once, waiting = await deliver_job(database, first), await deliver_job(database, second)
    assert failed_once.attempts >= 1 and failed_once.last_error == "api answered 500"
    assert (waiting.status, waiting.attempts, waiting.last_error) == ("pending", 0, None)
    await receiver.recover()

    async def both_delivered() -> bool:
        statuses = [(await message(database, m)).delivery_status for m in (first, second)]
        return statuses == ["delivered", "delivered"]

    await work_until(database, both_delivered)
    assert [r["text"] for r in await receiver.replies()] == ["first", "second"]
    assert (await deliver_job(database, first)).attempts >= 2
    assert (await deliver_job(database, second)).attempts == 1  # waiting is not a try


async def test_a_hopeless_reply_goes_dead_and_an_operator_retry_sends_it(
    database: Database,
    receiver: Receiver,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELIOGRAPH_JOB_MAX_ATTEMPTS", "3")
    reset_settings()
    _, admin = await member_with_token(database, role="admin", name="Ann Admin")
    _, agent = await member_with_token(database, role="agent", name="Al Agent")
    conv = await receive(database, "m1")
    await receiver.fail("500", seconds=60)
    message_id = await queue_reply(database, conv.conversation_id, "are you there?")

    async def dead() -> bool:
        return (await deliver_job(database, message_id)).status == "dead"

    await work_until(database, dead)
    job = await deliver_job(database, message_id)
    assert (job.attempts, job.last_error) == (3, "api answered 500")
    failed = await message(database, message_id)
    assert (failed.delivery_status, failed.delivery_error) == ("failed", "api answered 500")
    assert await receiver.replies() == []

    assert (await client.get("/api/v1/jobs/dead", headers=agent)).status_code == 403
    listed = await client.get("/api/v1/jobs/dead", headers=admin)
    assert listed.status_code == 200
    assert (job.id, "outbox.deliver", {"message_id": message_id}) in [
        (j["id"], j["kind"], j["payload"]) for j in listed.json()
    ]

    await receiver.recover()
    retried = await client.post(f"/api/v1/jobs/{job.id}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    again = await client.post(f"/api/v1/jobs/{job.id}/retry", headers=admin)
    assert again.status_code == 404  # no longer dead
    await run_jobs(database)
    assert (await message(database, message_id)).delivery_status == "delivered"
    assert [r["text"] for r in await receiver.replies()] == ["are you there?"]
    dead_now = (await client.get("/api/v1/jobs/dead", headers=admin)).json()
    assert job.id not in [j["id"] for j in dead_now]


@ENGINE_NEUTRAL
async def test_a_refusing_receiver_fails_the_reply_at_once(
    database: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_API_OUTBOUND_SECRET", "not-the-receivers-secret-0000")
    reset_settings()
    conv = await receive(database, "m1")
    message_id = await queue_reply(database, conv.conversation_id, "hi")
    await run_jobs(database)
    job = await deliver_job(database, message_id)
    assert (job.status, job.attempts) == ("dead", 1)  # a 403 will not change on retry
    failed = await message(database, message_id)
    assert failed.delivery_status == "failed"
    assert "refused the message: 403" in (failed.delivery_error or "")


@ENGINE_NEUTRAL
async def test_an_unreachable_receiver_is_retried(
    database: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_API_OUTBOUND_URL", f"http://127.0.0.1:{free_port()}/replies")
    reset_settings()
    conv = await receive(database, "m1")
    message_id = await queue_reply(database, conv.conversation_id, "hi")
    await run_jobs(database)
    assert (await deliver_job(database, message_id)).status == "pending"
    waiting = await message(database, message_id)
    assert waiting.delivery_status == "queued"
    assert "could not reach" in (waiting.delivery_error or "")


@ENGINE_NEUTRAL
async def test_an_opted_out_customer_gets_nothing(database: Database, receiver: Receiver) -> None:
    conv = await receive(database, "m1", "cust-stop")
    async with database.session() as session:
        ident = (
            await session.execute(select(Identity).where(Identity.external_id == "cust-stop"))
        ).scalar_one()
        ident.opted_out = True
        await session.commit()
    message_id = await queue_reply(database, conv.conversation_id, "special offer!")
    await run_jobs(database)
    assert (await deliver_job(database, message_id)).attempts == 1
    failed = await message(database, message_id)
    assert failed.delivery_status == "failed" and "opted out" in (failed.delivery_error or "")
    assert await receiver.replies() == []
