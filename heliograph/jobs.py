"""Durable jobs in the database: enqueue in the caller's transaction, claim with a lease.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE SKIP LOCKED]) RETURNING``
statement. On PostgreSQL ``SKIP LOCKED`` lets any number of workers claim disjoint rows;
on SQLite the statement runs under ``BEGIN IMMEDIATE`` and so is serialised. A claim
carries a lease (``locked_until``): a crashed worker's rows become claimable again when
it expires. Handlers must be idempotent, since a job whose worker died after the side
effect but before ``complete`` runs again.

Requests go first, within a bound. The workers share the process (and its CPU) with the
web server. While webhooks are arriving (``foreground_active`` was called in the last
``_FOREGROUND_WINDOW_S``), a worker runs one small burst of jobs at a time and then rests,
so that its bursts take at most ``worker_share_under_load`` of the wall-clock time; under
constant load background work still progresses at that share, and at full speed as soon
as the requests pause.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import and_, func, insert, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import logs
from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Payload(BaseModel):
    """The body of an event or a job, declared once as a model beside its name.

    Stored as JSON in ``job.payload`` and validated again when the job runs, so a handler
    gets the model, never a bare dict. Fields a newer version added are ignored by an older
    worker (``extra="ignore"``), so jobs survive a rolling upgrade either way."""

    model_config = ConfigDict(frozen=True, extra="ignore")


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Event(Generic[P]):
    """Something that happened, published in the transaction that made it so. Each
    subscriber (a ``JobKind``) gets one job per published payload."""

    name: str
    payload: type[P]

    def __post_init__(self) -> None:
        _declare(_events, self.name, self)


@dataclass(frozen=True)
class JobKind(Generic[P]):
    """A kind of durable job: its name (stored in ``job.kind``) and its payload model."""

    name: str
    payload: type[P]

    def __post_init__(self) -> None:
        _declare(_kinds, self.name, self)


Handler = Callable[[Any], Awaitable[None]]
DeadHook = Callable[[Any, str], Awaitable[None]]
_events: dict[str, Event[Any]] = {}
_kinds: dict[str, JobKind[Any]] = {}
_handlers: dict[str, Handler] = {}
_subscribers: dict[str, list[str]] = {}
_dead_hooks: dict[str, DeadHook] = {}


def _declare(table: dict[str, Any], name: str, declaration: Any) -> None:
    known = table.get(name)
    if known is not None and known != declaration:
        raise ValueError(f"{name!r} is declared twice, with different payloads")
    table[name] = declaration


_wakeup: asyncio.Event | None = None
JOB_TABLE = Job.__table__  # type: ignore[attr-defined]
_foreground_at = float("-inf")
_FOREGROUND_WINDOW_S = 0.2
_BURST_UNDER_LOAD = 2  # jobs claimed (and run together) per burst while requests arrive
_MAX_REST_S = 1.0


class RetryLater(Exception):
    """The job failed for a passing reason; try again after ``delay_s`` (counts as an attempt)."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class Defer(Exception):
    """Not this job's turn yet (e.g. an earlier reply is still queued); does not count as a try."""

    def __init__(self, reason: str, delay_s: float = 1.0) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class PermanentFailure(Exception):
    """Retrying cannot help: the job goes straight to dead with this reason."""


def handler(kind: JobKind[P]) -> Callable[[Callable[[P], Awaitable[None]]], Handler]:
    """Register the function that runs jobs of ``kind``; it gets the payload model."""

    def register(fn: Callable[[P], Awaitable[None]]) -> Handler:
        if kind.name in _handlers and _handlers[kind.name] is not fn:
            raise ValueError(f"job kind {kind.name!r} has two handlers")
        _handlers[kind.name] = fn
        return fn

    return register


def on_dead(kind: JobKind[P]) -> Callable[[Callable[[P, str], Awaitable[None]]], DeadHook]:
    """Register what to record when a job of ``kind`` gives up (e.g. mark a reply failed)."""

    def register(fn: Callable[[P, str], Awaitable[None]]) -> DeadHook:
        _dead_hooks[kind.name] = fn
        return fn

    return register


def subscribe(event: Event[Any], kind: JobKind[Any]) -> None:
    """Each ``publish(event)`` enqueues one job of ``kind`` (a listener, Chatwoot-style).
    The kind's payload model must read the event's (the same model or a base of it)."""
    if not issubclass(event.payload, kind.payload):
        raise TypeError(
            f"{kind.name} takes {kind.payload.__name__}, "
            f"but {event.name} carries {event.payload.__name__}"
        )
    kinds = _subscribers.setdefault(event.name, [])
    if kind.name not in kinds:
        kinds.append(kind.name)


def unsubscribe(event: Event[Any], kind: JobKind[Any]) -> None:
    """Undo ``subscribe`` (a test that listened in for a while)."""
    kinds = _subscribers.get(event.name, [])
    if kind.name in kinds:
        kinds.remove(kind.name)


def subscribers(event: Event[Any]) -> list[JobKind[Any]]:
    """The job kinds each ``publish(event)`` enqueues, in subscription order."""
    return [_kinds[name] for name in _subscribers.get(event.name, [])]


def registered_kinds() -> set[str]:
    return set(_handlers)


def declared_events() -> dict[str, Event[Any]]:
    return dict(_events)


def declared_kinds() -> dict[str, JobKind[Any]]:
    return dict(_kinds)


def dump(payload: Payload) -> dict[str, Any]:
    """A payload as the JSON stored in ``job.payload``."""
    return payload.model_dump(mode="json", exclude_none=False)


async def enqueue(
    session: AsyncSession,
    kind: JobKind[P],
    payload: P,
    *,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
) -> Job | None:
    """Add a job to the caller's transaction. With ``dedupe_key``, a second enqueue is a no-op."""
    if not isinstance(payload, kind.payload):
        raise TypeError(f"{kind.name} takes {kind.payload.__name__}, not {type(payload).__name__}")
    if dedupe_key is not None:
        existing = await session.exec(select(Job.id).where(Job.dedupe_key == dedupe_key))  # type: ignore[call-overload]
        if existing.first() is not None:
            return None
    job = Job(
        kind=kind.name,
        payload=dump(payload),
        run_at=run_at or utcnow(),
        dedupe_key=dedupe_key,
        request_id=logs.current_request_id(),  # the request (or job) that caused this one
    )
    # The operator's HELIOGRAPH_JOB_MAX_ATTEMPTS unless the caller needs another limit.
    job.max_attempts = max_attempts if max_attempts is not None else get_settings().job_max_attempts
    session.add(job)
    return job


async def publish(session: AsyncSession, event: Event[P], payload: P) -> int:
    """Enqueue one job per subscriber of ``event`` in the caller's transaction (one INSERT
    for all of them)."""
    return await publish_many(session, event, [payload])


def job_rows(
    work: list[tuple[JobKind[Any], Payload, datetime | None]],
    dedupe_keys: list[str | None] | None = None,
) -> list[dict[str, Any]]:
    """``(kind, payload, run_at)`` jobs as the rows of one multi-row ``INSERT`` into
    ``JOB_TABLE`` (for callers that write with Core, even synchronously)."""
    now, attempts = utcnow(), get_settings().job_max_attempts
    keys = dedupe_keys or [None] * len(work)
    request_id = logs.current_request_id()
    return [
        {
            "kind": kind.name,
            "payload": dump(payload),
            "status": "pending",
            "attempts": 0,
            "max_attempts": attempts,
            "run_at": run_at or now,
            "dedupe_key": key,
            "created_at": now,
            "request_id": request_id,
        }
        for (kind, payload, run_at), key in zip(work, keys, strict=True)
    ]


def published(event: Event[P], payloads: list[P]) -> list[dict[str, Any]]:
    """The job rows ``publish_many(event, payloads)`` inserts: one per subscriber and payload."""
    for payload in payloads:
        if not isinstance(payload, event.payload):
            raise TypeError(
                f"{event.name} carries {event.payload.__name__}, not {type(payload).__name__}"
            )
    kinds = subscribers(event)
    return job_rows([(k, p, None) for p in payloads for k in kinds])


async def enqueue_many(
    session: AsyncSession, work: list[tuple[JobKind[Any], Payload, datetime | None]]
) -> int:
    """Add many ``(kind, payload, run_at)`` jobs to the caller's transaction in one
    multi-row INSERT (a periodic pass can make thousands); no dedupe keys."""
    if not work:
        return 0
    await session.execute(insert(JOB_TABLE), job_rows(work))
    return len(work)


async def publish_many(session: AsyncSession, event: Event[P], payloads: list[P]) -> int:
    """``publish`` for many payloads at once (one INSERT for every subscriber of each)."""
    rows = published(event, payloads)
    if rows:
        await session.execute(insert(JOB_TABLE), rows)
    return len(rows)


def foreground_active() -> None:
    """A request is being served that the workers should not slow down (the ingest writer
    calls this per batch)."""
    global _foreground_at
    _foreground_at = time.monotonic()


def under_load() -> bool:
    return time.monotonic() - _foreground_at < _FOREGROUND_WINDOW_S


def wake_workers() -> None:
    """Tell this process's workers there is work (call after commit)."""
    if _wakeup is not None:
        _wakeup.set()


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    request_id: str | None = None


class JobQueue:
    def __init__(self, db: Database, settings: Settings, worker_id: str) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id

    async def claim(self, limit: int) -> list[ClaimedJob]:
        now = utcnow()
        claimable = (
            select(Job.id)
            .where(
                or_(
                    and_(Job.status == "pending", Job.run_at <= now),
                    and_(Job.status == "running", Job.locked_until < now),
                )
            )
            .order_by(Job.run_at, Job.id)
            .limit(limit)
        )
        if not self.db.is_sqlite:
            claimable = claimable.with_for_update(skip_locked=True)
        stmt = (
            update(Job)
            .where(Job.id.in_(claimable.scalar_subquery()))  # type: ignore[union-attr]
            .values(
                status="running",
                locked_until=now + timedelta(seconds=self.settings.job_lease_s),
                locked_by=self.worker_id,
                attempts=Job.attempts + 1,
            )
            .returning(
                Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.request_id
            )
        )
        # One short Core transaction: on SQLite one hop to the writer thread.
        rows = await self.db.run_transaction(lambda conn: conn.execute(stmt).all())
        return sorted((ClaimedJob(*row) for row in rows), key=lambda j: j.id)

    async def _finish(self, job_id: int, **values: Any) -> None:
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.locked_by == self.worker_id, Job.status == "running")
            .values(locked_until=None, **values)
        )
        await self.db.run_transaction(lambda conn: conn.execute(stmt))

    async def complete(self, job: ClaimedJob) -> None:
        await self._finish(job.id, status="done", finished_at=utcnow(), last_error=None)

    async def defer(self, job: ClaimedJob, delay_s: float) -> None:
        run_at = utcnow() + timedelta(seconds=delay_s)
        await self._finish(job.id, status="pending", run_at=run_at, attempts=job.attempts - 1)

    async def fail(self, job: ClaimedJob, error: str, delay_s: float | None = None) -> str:
        if job.attempts >= job.max_attempts:
            await self.kill(job, error)
            return "dead"
        if delay_s is None:
            delay_s = self.backoff(job.attempts)
        run_at = utcnow() + timedelta(seconds=delay_s)
        await self._finish(job.id, status="pending", run_at=run_at, last_error=error)
        return "retry"

    async def kill(self, job: ClaimedJob, error: str) -> None:
        await self._finish(job.id, status="dead", finished_at=utcnow(), last_error=error)
        hook, kind = _dead_hooks.get(job.kind), _kinds.get(job.kind)
        if hook is not None and kind is not None:
            try:
                await hook(kind.payload.model_validate(job.payload), error)
            except Exception:
                log.exception("dead hook for job %s (%s) failed", job.id, job.kind)

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter on the top half (AWS architecture blog)."""
        cap = min(
            self.settings.job_backoff_max_s,
            self.settings.job_backoff_base_s * (2 ** max(attempts - 1, 0)),
        )
        return cap / 2 + random.random() * cap / 2

    async def run_one(self, job: ClaimedJob) -> str:
        # Its log lines (and the jobs it enqueues) carry the request id it was enqueued under.
        with logs.job_scope(job.id, job.kind, job.request_id):
            return await self._run_one(job)

    async def _run_one(self, job: ClaimedJob) -> str:
        fn, kind = _handlers.get(job.kind), _kinds.get(job.kind)
        if fn is None or kind is None:
            await self.kill(job, f"no handler registered for job kind {job.kind!r}")
            return "dead"
        try:
            payload = kind.payload.model_validate(job.payload)
        except ValidationError as exc:
            await self.kill(job, f"the payload does not fit {kind.payload.__name__}: {exc}")
            return "dead"
        try:
            # A handler must finish well inside the lease, or another worker takes the job.
            await asyncio.wait_for(fn(payload), timeout=self.settings.job_lease_s * 0.8)
        except Defer as exc:
            await self.defer(job, exc.delay_s)
            return "deferred"
        except PermanentFailure as exc:
            await self.kill(job, str(exc))
            return "dead"
        except RetryLater as exc:
            return await self.fail(job, str(exc), exc.delay_s)
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            return await self.fail(job, f"{type(exc).__name__}: {exc}")
        await self.complete(job)
        return "done"


async def run_worker(db: Database, settings: Settings, worker_id: str, stop: asyncio.Event) -> None:
    """Claim and run jobs until ``stop`` is set."""
    global _wakeup
    _wakeup = asyncio.Event()
    queue = JobQueue(db, settings, worker_id)
    limit = asyncio.Semaphore(settings.worker_concurrency)
    running: set[asyncio.Task[str]] = set()

    async def guarded(job: ClaimedJob) -> str:
        async with limit:
            return await queue.run_one(job)

    share = min(1.0, max(0.01, settings.worker_share_under_load))
    rest_until = 0.0  # under load: no new burst before this (monotonic)
    burst_started = 0.0

    def burst_done(_: object) -> None:
        nonlocal rest_until
        if not running and under_load():
            # Rest (1 - share) / share times as long as the burst ran: its share of time.
            elapsed = time.monotonic() - burst_started
            rest_until = time.monotonic() + min(_MAX_REST_S, elapsed * (1 - share) / share)

    while not stop.is_set():
        free = settings.worker_concurrency - len(running)
        jobs: list[ClaimedJob] = []
        if under_load():
            now = time.monotonic()
            if running or now < rest_until:
                free = 0  # finish the burst, then rest, before claiming again
                if not running:
                    await _rest(stop, rest_until - now)
                    continue
            else:
                free = min(free, _BURST_UNDER_LOAD)
        if free > 0:
            if not running:
                burst_started = time.monotonic()
            try:
                jobs = await queue.claim(min(free, settings.worker_batch))
            except Exception:  # the database may be restarting; keep the worker alive
                log.exception("claiming jobs failed")
                await asyncio.sleep(1)
        for job in jobs:
            task = asyncio.create_task(guarded(job))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(burst_done)
            # A freed slot is a reason to claim again now, not at the next poll.
            task.add_done_callback(lambda _: _wakeup.set() if _wakeup is not None else None)
        if jobs and len(jobs) == free and not under_load():
            continue
        _wakeup.clear()
        waiters = [asyncio.create_task(_wakeup.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, timeout=settings.worker_poll_s, return_when="FIRST_COMPLETED")
        for waiter in waiters:
            waiter.cancel()
    if running:
        await asyncio.wait(running, timeout=settings.job_lease_s)


async def _rest(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        pass


async def keyed_since(session: AsyncSession, key_prefix: str, since: datetime) -> bool:
    """Whether a job whose dedupe key starts with ``key_prefix`` (a LIKE pattern: ``%`` and
    ``_`` in it match any text) was enqueued at or after ``since``, whatever its status."""
    found = await session.execute(
        select(Job.id)
        .where(
            Job.dedupe_key.like(f"{key_prefix}%"),  # type: ignore[union-attr]
            Job.created_at >= since,  # type: ignore[operator]
        )
        .limit(1)
    )
    return found.first() is not None


async def dead_jobs(session: AsyncSession, limit: int = 100) -> list[Job]:
    rows = await session.exec(  # type: ignore[call-overload]
        select(Job).where(Job.status == "dead").order_by(Job.id.desc()).limit(limit)  # type: ignore[union-attr]
    )
    return list(rows.scalars().all())


async def retry_dead(session: AsyncSession, job_id: int) -> bool:
    """An operator puts a dead job back in the queue with a fresh set of attempts."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "dead")
        .values(status="pending", attempts=0, run_at=utcnow(), finished_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def queue_stats(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: count for status, count in rows.all()}


async def purge_done(session: AsyncSession, older_than: timedelta) -> int:
    from sqlalchemy import delete

    result = await session.execute(
        delete(Job).where(Job.status == "done", Job.finished_at < utcnow() - older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def retry_dead_keyed(session: AsyncSession, dedupe_key: str) -> bool:
    """``retry_dead`` for the dead job enqueued with ``dedupe_key`` (e.g. ``deliver:<id>``)."""
    result = await session.execute(
        update(Job)
        .where(Job.dedupe_key == dedupe_key, Job.status == "dead")  # type: ignore[arg-type]
        .values(status="pending", attempts=0, run_at=utcnow(), finished_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
