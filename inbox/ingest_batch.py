"""Group commit: concurrent inbound items share one transaction (the ingest writer).

``inbox.intake.receive`` queues each item and waits. One writer per process and database
takes everything queued, stores it with ``inbox.ingest.store_batch`` (set-based Core
statements, about a dozen per batch whatever its size), commits once, then answers every
caller. Nothing waits for a batch to fill: while one batch commits, the next one gathers,
so a lone message is written at once (a batch of one) and a burst of N costs about one
transaction instead of N.

The guarantees, item by item:
- a caller hears "stored" only after the commit that contains its item;
- a replay (within a batch or of an earlier one) is a no-op that reports the stored row;
- two first messages from one new sender make one customer and one conversation (within
  a batch by construction; across batches and processes through the unique keys: a
  clash raises, and the batch falls back to one batch per item, each retried on a
  unique clash, which then finds the other writer's rows);
- if storing the batch fails for any reason before the commit, each item is stored
  again as a batch of its own (one transaction each), so one bad message fails alone;
  if the commit itself fails, every caller of that batch gets ``CommitFailed`` (never a
  success), since nothing of it is known to be on disk;
- a caller that is cancelled or times out while waiting does not take its item out:
  the batch it is in is committed regardless (a provider retry is then a replay).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from heliograph import jobs, logs
from heliograph.db import CommitFailed, Database, is_unique_violation
from inbox.bus import pages_changed
from inbox.ingest import AcceptResult, Item, Stored, store_batch
from inbox.outbox import StatusRecorded

__all__ = ["CommitFailed", "IngestWriter", "writer_for"]

log = logging.getLogger(__name__)

MAX_BATCH = 256  # items per transaction: bounds how long one batch holds SQLite's lock
_TRIES = 5  # a batch of one, again after a unique clash with another writer
# An item, its caller's future, and the id of the request that brought it.
Waiter = tuple[Item, "asyncio.Future[Stored]", str | None]


class IngestWriter:
    """The one writer of a process's inbound items on one database (group commit)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.loop = asyncio.get_running_loop()
        self._queue: list[Waiter] = []
        self._task: asyncio.Task[None] | None = None
        # What happened to the batches so far (tests and benchmarks read these).
        self.batches = self.messages = self.fallbacks = self.failures = 0

    def submit(self, items: Sequence[Item]) -> list[asyncio.Future[Stored]]:
        """Queue ``items`` (in order, in as few batches as fit); one future per item. A
        cancelled caller cancels only its futures: the items stay queued (or in the batch
        being written) and are committed all the same."""
        futures: list[asyncio.Future[Stored]] = [self.loop.create_future() for _ in items]
        request_id = logs.current_request_id()
        self._queue.extend((item, f, request_id) for item, f in zip(items, futures, strict=True))
        if self._task is None and self._queue:
            self._task = self.loop.create_task(self._run())
        return futures

    async def idle(self) -> None:
        """Wait until everything submitted so far is written (or has failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                # The batch's jobs carry its request's id when it holds one request's items.
                requests = {request_id for _, _, request_id in batch}
                logs.request_id_var.set(requests.pop() if len(requests) == 1 else None)
                await self._write(batch)
        finally:
            self._task = None

    async def _write(self, batch: list[Waiter]) -> None:
        items = [waiter[0] for waiter in batch]
        jobs.foreground_active()
        try:
            results = await self.db.run_transaction(
                lambda conn: store_batch(conn, items), priority=True
            )
        except CommitFailed as exc:
            self.failures += 1
            for waiter in batch:
                _answer(waiter, exc)
            return
        except Exception:
            log.warning(
                "a batch of %d inbound items failed; storing them one by one",
                len(items),
                exc_info=True,
            )
            self.fallbacks += 1
            await self._one_by_one(batch)
            return
        self.batches += 1
        self.messages += len(items)
        if any(_new(r) for r in results):
            jobs.wake_workers()
        _publish(results)
        for waiter, result in zip(batch, results, strict=True):
            _answer(waiter, result)

    async def _one_by_one(self, batch: list[Waiter]) -> None:
        """Each item of a failed batch as a batch of its own: one bad item fails alone,
        and a clash with another writer is settled by running it again."""
        for waiter in batch:
            item = waiter[0]
            for attempt in range(1, _TRIES + 1):
                try:
                    (result,) = await self.db.run_transaction(
                        lambda conn, item=item: store_batch(conn, [item]),  # type: ignore[misc]
                        priority=True,
                    )
                except IntegrityError as exc:
                    if is_unique_violation(exc) and attempt < _TRIES:
                        continue  # another writer committed it first: join theirs
                    _answer(waiter, exc)
                except Exception as exc:
                    _answer(waiter, exc)
                else:
                    if _new(result):
                        jobs.wake_workers()
                    _publish([result])
                    _answer(waiter, result)
                break


def _new(result: Stored) -> bool:
    """Did storing it give the workers something to do?"""
    return (isinstance(result, AcceptResult) and not result.duplicate) or type(result) is int


def _publish(results: Sequence[Stored]) -> None:
    """Live events for the open pages: each conversation that got a new message (the
    inbox and the thread), and each whose reply's delivery status changed (the thread)."""
    for conversation_id in dict.fromkeys(
        r.conversation_id for r in results if isinstance(r, AcceptResult) and not r.duplicate
    ):
        pages_changed(conversation_id)
    for conversation_id in dict.fromkeys(
        r.conversation_id for r in results if isinstance(r, StatusRecorded) and r.changed
    ):
        pages_changed(conversation_id, inbox=False)


def _answer(waiter: Waiter, outcome: Stored | Exception) -> None:
    future = waiter[1]
    if future.done():  # its caller stopped waiting; what happened to the message stands
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


_writers: weakref.WeakKeyDictionary[Database, IngestWriter] = weakref.WeakKeyDictionary()


def writer_for(db: Database) -> IngestWriter:
    writer = _writers.get(db)
    if writer is None or writer.loop is not asyncio.get_running_loop():
        writer = _writers[db] = IngestWriter(db)
    return writer
