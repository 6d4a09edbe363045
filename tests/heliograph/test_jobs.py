"""The durable job queue: leases, retries with backoff, defer, dead jobs and retrying them."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ConfigDict
from sqlalchemy import select, update

from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import Settings, get_settings, reset_settings
from tests.utils.jobs import run_jobs

ran: list[dict[str, Any]] = []
gave_up: list[tuple[dict[str, Any], str]] = []


class Script(jobs.Payload):
    """Whatever a test writes into a job: it scripts the job's fate."""

    model_config = ConfigDict(frozen=True, extra="allow")


TASK = jobs.JobKind("test.task", Script)
NO_HANDLER = jobs.JobKind("test.no_handler", Script)  # declared, never handled
HAPPENED = jobs.Event("test.happened", Script)
NOBODY_LISTENS = jobs.Event("test.nobody.listens", Script)


@jobs.handler(TASK)
async def _task(script: Script) -> None:
    """Does what its payload says, so each test can script a job's fate."""
    payload = script.model_dump()
    ran.append(payload)
    what = payload.get("do", "ok")
    tries = sum(1 for p in ran if p.get("n") == payload.get("n"))
    if what == "retry" and tries < payload.get("until", 99):
        raise jobs.RetryLater("provider busy", delay_s=payload.get("delay"))
    if what == "defer" and tries < payload.get("until", 99):
        raise jobs.Defer("not my turn", delay_s=0)
    if what == "permanent":
        raise jobs.PermanentFailure("the recipient does not exist")
    if what == "crash":
        raise ValueError("boom")
    if what == "slow":
        await asyncio.sleep(payload["sleep"])


@jobs.on_dead(TASK)
async def _dead(script: Script, error: str) -> None:
    gave_up.append((script.model_dump(), error))


@pytest.fixture(autouse=True)
def _clean() -> None:
    ran.clear()
    gave_up.clear()


async def add(database: Database, kind: jobs.JobKind[Script] = TASK, **kw: Any) -> int:
    async with database.session() as session:
        job = await jobs.enqueue(session, kind, Script(**kw.pop("payload", {})), **kw)
        await session.commit()
    assert job is not None and job.id is not None
    return job.id


async def job_row(database: Database, job_id: int) -> Job:
    async with database.read_session() as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


def queue(database: Database, worker: str, **overrides: Any) -> jobs.JobQueue:
    settings: Settings = get_settings().model_copy(update=overrides)
    return jobs.JobQueue(database, settings, worker)


async def test_a_job_runs_once_and_is_done(database: Database) -> None:
    job_id = await add(database, payload={"n": 1})
    assert await run_jobs(database) == {"done": 1}
    assert await run_jobs(database) == {}
    row = await job_row(database, job_id)
    assert (row.status, row.attempts, row.finished_at is not None) == ("done", 1, True)
    assert ran == [{"n": 1}]


async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
    database: Database,
) -> None:
    job_id = await add(database, payload={"n": 1, "do": "retry", "until": 3})
    assert await run_jobs(database) == {"retry": 1}
    row = await job_row(database, job_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "provider busy")
    assert row.run_at > utcnow()  # backing off, not spinning
    deadline = time.monotonic() + 15
    while (await job_row(database, job_id)).status != "done" and time.monotonic() < deadline:
        await run_jobs(database)
        await asyncio.sleep(0.02)
    row = await job_row(database, job_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 3, None)


async def test_an_explicit_retry_delay_is_used(database: Database) -> None:
    job_id = await add(database, payload={"do": "retry", "delay": 30})
    before = utcnow()
    await run_jobs(database)
    after = utcnow()
    run_at = (await job_row(database, job_id)).run_at
    assert before + timedelta(seconds=30) <= run_at <= after + timedelta(seconds=30)


async def test_a_job_that_keeps_failing_ends_dead(database: Database) -> None:
    job_id = await add(database, payload={"n": 9, "do": "crash"}, max_attempts=3)
    deadline = time.monotonic() + 15
    while (await job_row(database, job_id)).status != "dead" and time.monotonic() < deadline:
        await run_jobs(database)
        await asyncio.sleep(0.02)
    row = await job_row(database, job_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 3, "ValueError: boom")
    assert gave_up == [({"n": 9, "do": "crash"}, "ValueError: boom")]
    async with database.read_session() as session:
        assert [j.id for j in await jobs.dead_jobs(session)] == [job_id]
        assert (await jobs.queue_stats(session)).get("dead") == 1


async def test_max_attempts_comes_from_the_settings(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_JOB_MAX_ATTEMPTS", "2")
    reset_settings()
    job_id = await add(database, payload={"do": "crash"})
    assert (await job_row(database, job_id)).max_attempts == 2


async def test_a_permanent_failure_is_dead_at_once(database: Database) -> None:
    job_id = await add(database, payload={"do": "permanent"})
    assert await run_jobs(database) == {"dead": 1}
    row = await job_row(database, job_id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error == "the recipient does not exist"
    assert gave_up[0][1] == "the recipient does not exist"


async def test_deferring_does_not_use_up_attempts(database: Database) -> None:
    job_id = await add(database, payload={"n": 5, "do": "defer", "until": 6}, max_attempts=2)
    outcomes = await run_jobs(database)
    assert outcomes == {"deferred": 5, "done": 1}
    row = await job_row(database, job_id)
    assert (row.status, row.attempts) == ("done", 1)


async def test_an_unknown_kind_goes_dead_with_a_clear_error(database: Database) -> None:
    job_id = await add(database, kind=NO_HANDLER, payload={"x": 1})
    assert await run_jobs(database) == {"dead": 1}
    row = await job_row(database, job_id)
    assert row.status == "dead"
    assert row.last_error == "no handler registered for job kind 'test.no_handler'"


async def test_an_operator_retry_puts_a_dead_job_back(database: Database) -> None:
    job_id = await add(database, payload={"n": 2, "do": "permanent"})
    await run_jobs(database)
    async with database.session() as session:
        assert await jobs.retry_dead(session, job_id)
        await session.commit()
    row = await job_row(database, job_id)
    assert (row.status, row.attempts, row.finished_at) == ("pending", 0, None)
    async with database.session() as session:
        assert not await jobs.retry_dead(session, job_id)  # only dead jobs
        assert not await jobs.retry_dead(session, 999_999)
    assert await run_jobs(database) == {"dead": 1}
    assert len(ran) == 2


async def test_an_expired_lease_lets_another_worker_take_the_job(database: Database) -> None:
    job_id = await add(database, payload={"n": 3})
    crashed, healthy = queue(database, "worker-a"), queue(database, "worker-b")
    claimed_at = utcnow()
    (claimed,) = await crashed.claim(10)
    assert claimed.id == job_id
    assert await healthy.claim(10) == []  # still leased to worker-a
    row = await job_row(database, job_id)
    assert (row.status, row.locked_by) == ("running", "worker-a")
    assert row.locked_until is not None
    lease = (row.locked_until - claimed_at).total_seconds()
    assert get_settings().job_lease_s <= lease <= get_settings().job_lease_s + 5

    # worker-a died without finishing, and its lease ran out.
    async with database.session() as session:
        await session.execute(
            update(Job).where(Job.id == job_id).values(locked_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    (again,) = await healthy.claim(10)
    assert (again.id, again.attempts) == (job_id, 2)
    # worker-a comes back from the dead and reports: it no longer owns the job.
    await crashed.fail(claimed, "late report")
    await crashed.complete(claimed)
    row = await job_row(database, job_id)
    assert (row.status, row.locked_by, row.last_error) == ("running", "worker-b", None)
    assert await healthy.run_one(again) == "done"
    assert (await job_row(database, job_id)).status == "done"


async def test_a_handler_that_overruns_its_lease_is_retried(database: Database) -> None:
    job_id = await add(database, payload={"do": "slow", "sleep": 2})
    q = queue(database, "worker-a", job_lease_s=0.25)
    (claimed,) = await q.claim(1)
    assert await q.run_one(claimed) == "retry"
    row = await job_row(database, job_id)
    assert row.status == "pending" and (row.last_error or "").startswith("TimeoutError")


async def test_workers_claim_disjoint_jobs(database: Database) -> None:
    ids = {await add(database, payload={"n": i}) for i in range(12)}
    a, b = queue(database, "worker-a"), queue(database, "worker-b")
    first, second = await asyncio.gather(a.claim(8), b.claim(8))
    got_a, got_b = {j.id for j in first}, {j.id for j in second}
    assert not got_a & got_b
    assert got_a | got_b == ids


async def test_dedupe_key_enqueues_once_and_publish_reaches_subscribers(
    database: Database,
) -> None:
    async with database.session() as session:
        assert await jobs.enqueue(session, TASK, Script(n=1), dedupe_key="k1") is not None
        await session.commit()
    async with database.session() as session:
        assert await jobs.enqueue(session, TASK, Script(n=1), dedupe_key="k1") is None
        jobs.subscribe(HAPPENED, TASK)
        jobs.subscribe(HAPPENED, TASK)  # subscribing twice is one subscription
        assert await jobs.publish(session, HAPPENED, Script(n=2)) == 1
        assert await jobs.publish(session, NOBODY_LISTENS, Script(n=3)) == 0
        await session.commit()
    async with database.read_session() as session:
        payloads = (await session.execute(select(Job.payload).order_by(Job.id))).scalars().all()
    assert payloads == [{"n": 1}, {"n": 2}]


async def handled(count: int) -> None:
    for _ in range(250):
        if len(ran) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the worker ran {len(ran)} jobs, not {count}")


async def test_a_running_worker_drains_the_queue_and_stops(database: Database) -> None:
    for i in range(5):
        await add(database, payload={"n": i})
    stop = asyncio.Event()
    settings = get_settings().model_copy(update={"worker_poll_s": 0.05})
    worker = asyncio.create_task(jobs.run_worker(database, settings, "bg", stop))
    await handled(5)
    await add(database, payload={"n": "late"})  # arrives while the worker idles
    jobs.wake_workers()
    await handled(6)
    stop.set()
    await asyncio.wait_for(worker, timeout=5)
    assert sorted(str(p["n"]) for p in ran) == ["0", "1", "2", "3", "4", "late"]
    async with database.read_session() as session:
        assert await jobs.queue_stats(session) == {"done": 6}
