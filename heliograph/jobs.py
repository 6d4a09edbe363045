"""Durable jobs in the database: enqueue in the caller's transaction, claim with a lease.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE SKIP LOCKED]) RETURNING``
statement. On PostgreSQL ``SKIP LOCKED`` lets any number of workers claim disjoint rows;
on SQLite the statement runs under ``BEGIN IMMEDIATE`` and so is serialised. A claim
carries a lease (``locked_until``): a crashed worker's rows become claimable again when
it expires. Handlers must be idempotent, since a job whose worker died after the side
effect but before ``complete`` runs again.

A claim takes jobs of one kind: the kind of the most urgent due job (``JobKind.priority``:
routing, agent notifications and replies before bulk passes), then the oldest due jobs of
that kind. A kind with a batch handler (``batch_handler``) gets them all at once and
processes them together, usually in one transaction that also marks them done; a kind
with a plain ``handler`` runs them one by one, concurrently.

Per-job isolation in a batch: a job the handler marks failed (``Batch.fail``) is retried
alone while the others complete; if the handler raises, the jobs that did not complete
run again one at a time, so a poisoned job fails alone and a job whose success was
committed never runs twice.

Requests go first, within a bound that follows the backlog. The workers share the process
(and its event loop and CPU) with the web server. While webhooks are arriving
(``foreground_active`` was called in the last ``_FOREGROUND_WINDOW_S``) *and* the event
loop runs late (``_watch_loop``: a timer fires more than ``worker_yield_lag_s`` after it
was due, so requests are waiting their turn behind jobs), a worker runs one burst (a claim)
at a time and then rests, so that its bursts take a share of the CPU: at least
``worker_share_under_load``, growing to all of it as the most urgent due job's wait
approaches ``job_latency_target_s``. So the backlog stays bounded under any load the
machine can sustain, and requests keep the rest. While the loop keeps up, requests lose
nothing to the jobs and the workers run unpaced: resting then would only leave the CPU idle
and the agents waiting (bench/pipeline.py, SQLite, 50 msg/s: agent-notified p99 15.1 s
paced against 4.7 s unpaced, with the webhooks' own p99 at 252 against 150 ms).

Wake-ups: on PostgreSQL a trigger on ``job`` sends ``NOTIFY heliograph_jobs`` when the
inserting transaction commits, and every process's worker LISTENs, so an idle system
picks a job up within milliseconds in whichever process; on SQLite (one process) the
committer calls ``wake_workers``. Polling (``worker_poll_s``) remains the safety net.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import logs
from heliograph.db import Database, listening_connection, utcnow
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
K = TypeVar("K")


@dataclass(frozen=True)
class Event(Generic[P]):
    """Something that happened, published in the transaction that made it so. Each
    subscriber (a ``JobKind``) gets one job per published payload."""

    name: str
    payload: type[P]

    def __post_init__(self) -> None:
        _declare(_events, self.name, self)


URGENT, NORMAL, BULK = 0, 1, 2  # job priorities: claimed in this order
PRIORITIES = (URGENT, NORMAL, BULK)


@dataclass(frozen=True)
class JobKind(Generic[P]):
    """A kind of durable job: its name (stored in ``job.kind``), its payload model and its
    priority (``URGENT``: someone waits for it, e.g. routing, the agent's notification, a
    reply; ``NORMAL``; ``BULK``: passes and clean-up that may wait)."""

    name: str
    payload: type[P]
    priority: int = NORMAL

    def __post_init__(self) -> None:
        _declare(_kinds, self.name, self)


Handler = Callable[[Any], Awaitable[None]]
BatchHandler = Callable[["Batch[Any]"], Awaitable[None]]
DeadHook = Callable[[Any, str], Awaitable[None]]
_events: dict[str, Event[Any]] = {}
_kinds: dict[str, JobKind[Any]] = {}
_handlers: dict[str, Handler] = {}
_batch_handlers: dict[str, tuple[BatchHandler, int]] = {}
_subscribers: dict[str, list[str]] = {}
_dead_hooks: dict[str, DeadHook] = {}


def _declare(table: dict[str, Any], name: str, declaration: Any) -> None:
    known = table.get(name)
    if known is not None and known != declaration:
        raise ValueError(f"{name!r} is declared twice, with different payloads")
    table[name] = declaration


_wakeup: asyncio.Event | None = None
JOB_TABLE = Job.__table__  # type: ignore[attr-defined]
WAKE_CHANNEL = "heliograph_jobs"  # NOTIFYed by the job table's trigger (PostgreSQL)
_foreground_at = float("-inf")
_FOREGROUND_WINDOW_S = 0.2
_SINGLES_UNDER_LOAD = 4  # single jobs claimed per burst while requests arrive
_MAX_REST_S = 1.0
_LAG_PROBE_S = 0.02  # how often the loop's lateness is sampled
_loop_lag_s = 0.0  # how late a timer fired lately (each sample kept, decaying by a fifth)


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
        if (kind.name in _handlers and _handlers[kind.name] is not fn) or (
            kind.name in _batch_handlers
        ):
            raise ValueError(f"job kind {kind.name!r} has two handlers")
        _handlers[kind.name] = fn
        return fn

    return register


def batch_handler(
    kind: JobKind[P], *, size: int = 100
) -> Callable[[Callable[[Batch[P]], Awaitable[None]]], BatchHandler]:
    """Register the function that runs up to ``size`` due jobs of ``kind`` together: it
    gets a ``Batch`` (the payloads in claim order), marks the ones that failed with
    ``batch.fail(i, exc)`` and, where the work is a transaction, calls
    ``await batch.complete_in(session)`` before its commit so the jobs are done in the same
    commit as their work (otherwise the worker marks them done right after it returns).
    If it raises, the jobs not yet done run again one at a time (a batch of one each)."""

    def register(fn: Callable[[Batch[P]], Awaitable[None]]) -> BatchHandler:
        known = _batch_handlers.get(kind.name)
        if kind.name in _handlers or (known is not None and known[0] is not fn):
            raise ValueError(f"job kind {kind.name!r} has two handlers")
        _batch_handlers[kind.name] = (fn, max(1, size))
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


def is_batch_kind(name: str) -> bool:
    """Whether jobs of this kind run together (``batch_handler``)."""
    return name in _batch_handlers


def registered_kinds() -> set[str]:
    return set(_handlers) | set(_batch_handlers)


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
        priority=kind.priority,
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
            "priority": kind.priority,
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


def requests_held_up(settings: Settings) -> bool:
    """Requests are arriving and waiting their turn in the loop: background work yields."""
    return under_load() and _loop_lag_s > settings.worker_yield_lag_s


async def _watch_loop(stop: asyncio.Event) -> None:
    global _loop_lag_s
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(_LAG_PROBE_S)
        late = max(0.0, time.monotonic() - started - _LAG_PROBE_S)
        _loop_lag_s = max(late, _loop_lag_s * 0.8)


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


class Batch(Generic[P]):
    """Due jobs of one kind handed to a batch handler together (``batch_handler``)."""

    def __init__(self, queue: JobQueue, jobs: list[ClaimedJob], payloads: list[P]) -> None:
        self.payloads = payloads
        self.failures: dict[int, BaseException] = {}
        self.completed = False
        self._queue = queue
        self._jobs = jobs

    def __len__(self) -> int:
        return len(self.payloads)

    def fail(self, index: int, exc: BaseException) -> None:
        """The job at ``index`` failed (``RetryLater``, ``Defer``, ``PermanentFailure`` or
        any error): it alone is retried, deferred or given up; the others complete."""
        self.failures[index] = exc

    def succeeded(self) -> list[int]:
        return [i for i in range(len(self.payloads)) if i not in self.failures]

    async def in_lanes(
        self,
        lanes: Iterable[list[int]],
        work: Callable[[int], Awaitable[None]],
        *,
        at_once: int,
        held: str,
    ) -> None:
        """``await work(i)`` for the jobs of each lane (indices) in order, the lanes side by
        side, at most ``at_once`` works at a time (e.g. one lane per chat or conversation,
        whose messages must arrive in order). A job whose work raises fails alone; the later
        jobs of its lane are deferred (``held`` says why), not tried."""
        limit = asyncio.Semaphore(max(1, at_once))

        async def lane(indices: list[int]) -> None:
            for n, i in enumerate(indices):
                try:
                    async with limit:
                        await work(i)
                except Exception as exc:
                    self.fail(i, exc)
                    for later in indices[n + 1 :]:
                        self.fail(later, Defer(held))
                    return

        await asyncio.gather(*(lane(indices) for indices in lanes))

    def groups(self, key: Callable[[P], K]) -> dict[K, list[int]]:
        """The jobs' indices by ``key(payload)`` (e.g. by conversation), in order."""
        found: dict[K, list[int]] = {}
        for i, payload in enumerate(self.payloads):
            found.setdefault(key(payload), []).append(i)
        return found

    async def per_group(
        self, groups: dict[K, list[int]], work: Callable[[K], Awaitable[None]], *, at_once: int
    ) -> None:
        """``await work(key)`` once for each group of jobs (``groups``), at most ``at_once``
        at a time: one piece of work serves all the jobs of its group (a conversation's
        thread brought up to date once, however many of its messages are in the batch).
        A group whose work raises fails its own jobs, all of them, and no other."""
        limit = asyncio.Semaphore(max(1, at_once))

        async def group(key: K, indices: list[int]) -> None:
            async with limit:
                try:
                    await work(key)
                except Exception as exc:
                    for i in indices:
                        self.fail(i, exc)

        await asyncio.gather(*(group(key, indices) for key, indices in groups.items()))

    async def complete_in(self, session: AsyncSession) -> None:
        """Mark the jobs that did not fail done in ``session``'s transaction (call it right
        before that transaction commits, after every ``fail``)."""
        ids = [self._jobs[i].id for i in self.succeeded()]
        if ids:
            await session.execute(*self._queue.completion(ids))
        self.completed = True


def _claim_order(row: Any) -> tuple[int, datetime, int]:
    return row.priority, row.run_at, row.id


@dataclass(frozen=True)
class _Statements:
    """The queue's hot statements, built once with bound parameters: building a statement
    costs several times what running it costs (about 100-300 us of Python against 30-50 us
    to execute with its compiled form cached), and a worker runs these for every job."""

    lapsed_head: Any  # :now
    pending_head: Any  # :priority, :now
    kind_pending: Any  # :kind, :now, :size
    kind_lapsed: Any  # :kind, :now, :size
    claim: Any  # :ids, :now, :lease, :worker
    complete: Any  # :ids, :worker, :at


@functools.cache
def _statements(skip_locked: bool) -> _Statements:
    now, kind, size = bindparam("now_"), bindparam("kind_"), bindparam("size_")
    pending = Job.status == "pending"
    lapsed = and_(Job.status == "running", Job.locked_until < now)
    ids = col(Job.id).in_(bindparam("ids_", expanding=True))
    ours = and_(ids, Job.locked_by == bindparam("worker_"))

    def first(*where: Any, order: tuple[Any, ...], limit: Any) -> Any:
        query = select(Job.id, Job.kind, Job.priority, Job.run_at).where(*where)
        query = query.order_by(*order, Job.id).limit(limit)
        return query.with_for_update(skip_locked=True) if skip_locked else query

    return _Statements(
        lapsed_head=first(lapsed, order=(Job.priority, Job.run_at), limit=1),
        pending_head=first(
            pending,
            Job.priority == bindparam("priority_"),
            Job.run_at <= now,
            order=(Job.run_at,),
            limit=1,
        ),
        kind_pending=first(
            Job.kind == kind, pending, Job.run_at <= now, order=(Job.run_at,), limit=size
        ),
        kind_lapsed=first(Job.kind == kind, lapsed, order=(Job.run_at,), limit=size),
        claim=update(Job)
        .where(ids, or_(and_(pending, Job.run_at <= now), lapsed))
        .values(
            status="running",
            locked_until=bindparam("lease_"),
            locked_by=bindparam("worker_"),
            attempts=Job.attempts + 1,
        )
        .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.request_id),
        complete=update(Job)
        .where(ours, Job.status == "running")
        .values(status="done", finished_at=bindparam("at_"), locked_until=None, last_error=None),
    )


class JobQueue:
    def __init__(self, db: Database, settings: Settings, worker_id: str) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = worker_id
        self.lag_s = 0.0  # how long the most urgent due job had waited at the last claim
        self._sql = _statements(skip_locked=not db.is_sqlite)

    async def claim(
        self, limit: int, *, due_by: datetime | None = None, urgent_only: bool = False
    ) -> list[ClaimedJob]:
        """Claim due jobs of one kind: the kind of the most urgent due job (or of a less
        urgent one that has waited past its priority's ``patience()``), then up to
        ``limit`` of that kind's oldest (up to its batch size for a batch kind). ``due_by``:
        only jobs due by then (default now), e.g. not the retries of a pass that began then.
        ``urgent_only``: none unless an URGENT job is due.

        Each query walks an index from its first row (ix_job_next per priority, then
        ix_job_kind_due; a lapsed lease by ix_job_lease) and stops at its limit: one due
        condition with an OR over both statuses made the database sort every due job on
        each claim, a cost that grew with the backlog it was there to drain."""
        now = due_by or utcnow()
        lease = utcnow() + timedelta(seconds=self.settings.job_lease_s)
        sql = self._sql
        patience = self.patience()

        def work(conn: Any) -> tuple[Any, list[Any]]:
            # The most urgent due job: a pending one, priority by priority, or one whose
            # worker's lease ran out (few: the jobs running now), whichever comes first.
            head = conn.execute(sql.lapsed_head, {"now_": now}).first()
            if head is not None and urgent_only and head.priority > URGENT:
                head = None
            for priority in PRIORITIES[:1] if urgent_only else PRIORITIES:
                if head is not None and head.priority < priority:
                    break
                row = conn.execute(sql.pending_head, {"priority_": priority, "now_": now}).first()
                if row is not None:
                    head = row if head is None else min(head, row, key=_claim_order)
                    break
            if head is None:
                return None, []
            if not urgent_only:  # work that has waited past its patience goes first
                for priority in PRIORITIES[head.priority + 1 :]:
                    waited = now - timedelta(seconds=patience[priority])
                    row = conn.execute(
                        sql.pending_head, {"priority_": priority, "now_": waited}
                    ).first()
                    if row is not None:
                        head = row
                        break
            batch = _batch_handlers.get(head.kind)
            of_kind = {"kind_": head.kind, "now_": now, "size_": batch[1] if batch else limit}
            # That kind's oldest due jobs: the pending ones by the index, and any whose lease
            # lapsed; the oldest of both.
            rows = [
                *conn.execute(sql.kind_pending, of_kind),
                *conn.execute(sql.kind_lapsed, of_kind),
            ]
            ids = [row.id for row in sorted(rows, key=_claim_order)[: of_kind["size_"]]]
            claimed = conn.execute(
                sql.claim, {"ids_": ids, "now_": now, "lease_": lease, "worker_": self.worker_id}
            )
            return head.run_at, claimed.all()

        # One short Core transaction: on SQLite one hop to the writer thread.
        run_at, rows = await self.db.run_transaction(work)
        self.lag_s = max(0.0, (now - run_at).total_seconds()) if run_at is not None else 0.0
        return sorted((ClaimedJob(*row) for row in rows), key=lambda j: j.id)

    def patience(self) -> dict[int, float]:
        """How long a due job of each lower priority waits behind more urgent work before
        it takes the next claim all the same (``HELIOGRAPH_JOB_PATIENCE_S``, ``..._BULK_...``).
        Under a load that keeps URGENT jobs always due, a strict order never ran a
        translation or a CRM pass (in bench/pipeline.py on SQLite every translation of a
        rate was still waiting at its end); past its patience a job goes first, and with
        the one-batch rule (``run_worker``) one such batch at most runs beside the urgent
        work, which keeps the rest of the worker."""
        s = self.settings
        return {NORMAL: s.job_patience_s, BULK: s.job_bulk_patience_s}

    def completion(self, job_ids: list[int]) -> tuple[Any, dict[str, Any]]:
        """The statement, and its parameters, that marks these claimed jobs done (still
        ours, still running)."""
        return self._sql.complete, {"ids_": job_ids, "worker_": self.worker_id, "at_": utcnow()}

    async def _finish(self, job_id: int, **values: Any) -> None:
        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.locked_by == self.worker_id, Job.status == "running")
            .values(locked_until=None, **values)
        )
        await self.db.run_transaction(lambda conn: conn.execute(stmt))

    async def complete(self, job: ClaimedJob) -> None:
        await self.complete_many([job])

    async def complete_many(self, jobs: list[ClaimedJob]) -> None:
        if jobs:
            stmt, params = self.completion([job.id for job in jobs])
            await self.db.run_transaction(lambda conn: conn.execute(stmt, params))

    async def still_running(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Those of ``jobs`` this worker still holds (not done, not released)."""
        ids = [job.id for job in jobs]
        async with self.db.read_session() as session:
            rows = await session.execute(
                select(Job.id).where(
                    Job.id.in_(ids),  # type: ignore[union-attr]
                    Job.locked_by == self.worker_id,
                    Job.status == "running",
                )
            )
            held = {row[0] for row in rows.all()}
        return [job for job in jobs if job.id in held]

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

    async def settle(self, job: ClaimedJob, exc: BaseException) -> str:
        """What a job's failure means: deferred, given up, or retried after a backoff. An
        unexpected error (not one of ours) is logged with its traceback."""
        if not isinstance(exc, Defer | PermanentFailure | RetryLater):
            log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
        if isinstance(exc, Defer):
            await self.defer(job, exc.delay_s)
            return "deferred"
        if isinstance(exc, PermanentFailure):
            await self.kill(job, str(exc))
            return "dead"
        if isinstance(exc, RetryLater):
            return await self.fail(job, str(exc), exc.delay_s)
        return await self.fail(job, f"{type(exc).__name__}: {exc}")

    async def _payload(self, job: ClaimedJob) -> Payload | None:
        """The job's payload model, or None after giving the job up (no handler, bad body)."""
        kind = _kinds.get(job.kind)
        if kind is None or (job.kind not in _handlers and job.kind not in _batch_handlers):
            await self.kill(job, f"no handler registered for job kind {job.kind!r}")
            return None
        try:
            return kind.payload.model_validate(job.payload)
        except ValidationError as exc:
            await self.kill(job, f"the payload does not fit {kind.payload.__name__}: {exc}")
            return None

    async def run(self, jobs: list[ClaimedJob]) -> list[str]:
        """Run claimed jobs of one kind, as one batch or one by one concurrently; each
        job's outcome (done, retry, deferred, dead) in order."""
        if jobs and jobs[0].kind in _batch_handlers:
            return await self.run_batch(jobs)
        return list(await asyncio.gather(*(self.run_one(job) for job in jobs)))

    async def run_one(self, job: ClaimedJob) -> str:
        # Its log lines (and the jobs it enqueues) carry the request id it was enqueued under.
        with logs.job_scope(job.id, job.kind, job.request_id):
            return await self._run_one(job)

    async def _run_one(self, job: ClaimedJob) -> str:
        if job.kind in _batch_handlers:
            return (await self.run_batch([job]))[0]
        payload = await self._payload(job)
        if payload is None:
            return "dead"
        try:
            # A handler must finish well inside the lease, or another worker takes the job.
            await asyncio.wait_for(_handlers[job.kind](payload), self.settings.job_lease_s * 0.8)
        except Exception as exc:
            return await self.settle(job, exc)
        await self.complete(job)
        return "done"

    async def run_batch(self, jobs: list[ClaimedJob]) -> list[str]:
        outcomes = {job.id: "dead" for job in jobs}  # until known otherwise
        valid: list[ClaimedJob] = []
        payloads: list[Payload] = []
        for job in jobs:
            payload = await self._payload(job)
            if payload is not None:
                valid.append(job)
                payloads.append(payload)
        if valid:
            outcomes.update(await self._run_batch(valid, payloads))
        return [outcomes[job.id] for job in jobs]

    async def _run_batch(self, valid: list[ClaimedJob], payloads: list[Payload]) -> dict[int, str]:
        fn = _batch_handlers[valid[0].kind][0]
        batch: Batch[Any] = Batch(self, valid, payloads)
        with logs.job_scope(valid[0].id, valid[0].kind, valid[0].request_id):
            try:
                await asyncio.wait_for(fn(batch), timeout=self.settings.job_lease_s * 0.8)
            except Exception as exc:
                if len(valid) == 1:
                    return {valid[0].id: await self.settle(valid[0], exc)}
                # Which job broke it is unknown: run the ones not done again, each alone.
                log.warning(
                    "a batch of %d %s jobs failed (%s); running them one at a time",
                    len(valid),
                    valid[0].kind,
                    exc,
                )
                outcomes = {job.id: "done" for job in valid}  # committed before it broke
                for job in await self.still_running(valid):
                    outcomes[job.id] = (await self.run_batch([job]))[0]
                return outcomes
        if not batch.completed:
            await self.complete_many([valid[i] for i in batch.succeeded()])
        outcomes = {job.id: "done" for job in valid}
        for index, exc in sorted(batch.failures.items()):
            outcomes[valid[index].id] = await self.settle(valid[index], exc)
        return outcomes


def background_share(settings: Settings, lag_s: float) -> float:
    """The share of wall-clock time background work gets while requests arrive: at least
    ``worker_share_under_load``, growing linearly to all of it as the most urgent due job's
    wait reaches ``job_latency_target_s``."""
    base = min(1.0, max(0.01, settings.worker_share_under_load))
    target = max(0.001, settings.job_latency_target_s)
    return min(1.0, base + (1.0 - base) * lag_s / target)


async def run_worker(db: Database, settings: Settings, worker_id: str, stop: asyncio.Event) -> None:
    """Claim and run jobs until ``stop`` is set."""
    global _wakeup
    _wakeup = asyncio.Event()
    wakeup = _wakeup
    queue = JobQueue(db, settings, worker_id)
    running: dict[asyncio.Task[None], int] = {}  # each claim's task and the slots it holds
    # Claims of kinds below URGENT still running: one at a time, so that work that can
    # wait (translations, card refreshes, CRM passes) never takes more than one slot's
    # share of the CPU from routing, the agents' notifications and the replies. (Several
    # side by side made them finish sooner and everything urgent later: bench/pipeline.py,
    # SQLite at 50 msg/s.)
    lesser: set[asyncio.Task[None]] = set()
    watcher = asyncio.create_task(_watch_loop(stop))
    close_listener = await _listen(db, wakeup)
    rest_until = 0.0  # under load: no new burst before this (monotonic)
    burst_started = burst_cpu = 0.0

    def burst_done(_: object) -> None:
        nonlocal rest_until
        wakeup.set()  # a freed slot is a reason to claim again now, not at the next poll
        if not running and requests_held_up(settings):
            # Rest (1 - share) / share times as long as the burst used the CPU: its share.
            # The process's CPU, not the wall clock: a burst that mostly waited on a
            # provider (a Slack post, a reply) left the CPU to requests meanwhile and owes
            # no rest for it. (Requests served during the burst count too: it errs long.)
            share = background_share(settings, queue.lag_s)
            used = min(time.process_time() - burst_cpu, time.monotonic() - burst_started)
            rest_until = time.monotonic() + min(_MAX_REST_S, used * (1 - share) / share)

    try:
        while not stop.is_set():
            # A batch holds one slot (its jobs run in turn), single jobs one each.
            free = settings.worker_concurrency - sum(running.values())
            claimed: list[ClaimedJob] = []
            paced = requests_held_up(settings) and background_share(settings, queue.lag_s) < 1.0
            if paced:
                now = time.monotonic()
                if running or now < rest_until:
                    if not running:
                        await _rest(stop, rest_until - now)
                        continue
                    free = 0  # finish the burst, then rest, before claiming again
                else:
                    free = min(free, _SINGLES_UNDER_LOAD)
            if free > 0:
                if not running:
                    burst_started, burst_cpu = time.monotonic(), time.process_time()
                try:
                    claimed = await queue.claim(
                        min(free, settings.worker_batch), urgent_only=bool(lesser)
                    )
                except Exception:  # the database may be restarting; keep the worker alive
                    log.exception("claiming jobs failed")
                    await _rest(stop, 1.0)
                    continue
            if claimed:
                task = asyncio.create_task(queue.run(claimed))
                running[task] = 1 if claimed[0].kind in _batch_handlers else len(claimed)
                task.add_done_callback(lambda done: running.pop(done, None))  # type: ignore[arg-type]
                kind = _kinds.get(claimed[0].kind)
                if kind is not None and kind.priority > URGENT:
                    lesser.add(task)
                    task.add_done_callback(lesser.discard)  # type: ignore[arg-type]
                task.add_done_callback(burst_done)
                if not paced:
                    continue  # claim again at once while there are free slots
            wakeup.clear()
            waiters = [asyncio.create_task(wakeup.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(
                waiters, timeout=settings.worker_poll_s, return_when="FIRST_COMPLETED"
            )
            for waiter in waiters:
                waiter.cancel()
    finally:
        watcher.cancel()
        if running:
            await asyncio.wait(list(running), timeout=settings.job_lease_s)
        if close_listener is not None:
            await close_listener()


async def _listen(db: Database, wakeup: asyncio.Event) -> Callable[[], Awaitable[None]] | None:
    """On PostgreSQL, LISTEN for committed jobs (from any process); None elsewhere or when
    the connection fails (polling still finds the jobs)."""
    if db.is_sqlite:
        return None
    try:
        conn = await listening_connection(db.url, WAKE_CHANNEL, lambda *_: wakeup.set())
    except Exception:
        log.warning("LISTEN %s failed; workers poll instead", WAKE_CHANNEL, exc_info=True)
        return None
    return conn.close


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


@dataclass(frozen=True)
class KindBacklog:
    """One job kind's queue now: due jobs waiting, jobs running, and how long the oldest
    due one has waited (0 when none is due)."""

    kind: str
    due: int
    running: int
    oldest_due_s: float


async def backlog_by_kind(session: AsyncSession) -> list[KindBacklog]:
    """What each kind has waiting or running (for /metrics and /healthz); kinds with
    neither are left out."""
    now = utcnow()
    due_rows = await session.execute(
        select(Job.kind, func.count(), func.min(Job.run_at))
        .where(Job.status == "pending", Job.run_at <= now)
        .group_by(Job.kind)
    )
    running_rows = await session.execute(
        select(Job.kind, func.count()).where(Job.status == "running").group_by(Job.kind)
    )
    due = {kind: (count, oldest) for kind, count, oldest in due_rows.all()}
    running = dict(running_rows.all())  # type: ignore[arg-type]
    backlog = []
    for kind in sorted(set(due) | set(running)):
        count, oldest = due.get(kind, (0, None))
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)  # SQLite keeps UTC without a zone
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        backlog.append(KindBacklog(kind, count, running.get(kind, 0), age))
    return backlog


async def purge_done(session: AsyncSession, older_than: timedelta) -> int:
    from sqlalchemy import delete

    result = await session.execute(
        delete(Job).where(Job.status == "done", Job.finished_at < utcnow() - older_than)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def status_keyed(session: AsyncSession, dedupe_key: str) -> str | None:
    """The status of the job enqueued with ``dedupe_key`` (pending, running, done, dead),
    or None when there is none."""
    found = await session.execute(select(Job.status).where(Job.dedupe_key == dedupe_key))  # type: ignore[arg-type]
    return found.scalar()


async def due_now_keyed(session: AsyncSession, dedupe_key: str) -> bool:
    """The pending job enqueued with ``dedupe_key`` that waits for its time (deferred, or
    backing off) is due now: what it waited for has happened. (A deferred reply waited
    out the rest of its second after its translation had come.)"""
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(Job.dedupe_key == dedupe_key, Job.status == "pending", Job.run_at > now)  # type: ignore[arg-type, operator]
        .values(run_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry_dead_keyed(session: AsyncSession, dedupe_key: str) -> bool:
    """``retry_dead`` for the dead job enqueued with ``dedupe_key`` (e.g. ``deliver:<id>``)."""
    result = await session.execute(
        update(Job)
        .where(Job.dedupe_key == dedupe_key, Job.status == "dead")  # type: ignore[arg-type]
        .values(status="pending", attempts=0, run_at=utcnow(), finished_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
