"""Group commit for ``accept()``: concurrent inbound messages share one transaction.

Each ``accept()`` call queues its message and waits. One writer per process and database
takes everything queued, stores it with set-based Core statements (about a dozen per
batch, whatever its size: one SELECT for all dedupe keys, identities resolved in bulk,
multi-row INSERTs for identities, conversations, messages and their jobs), commits once,
then answers every caller. Nothing waits for a batch to fill: while one batch commits,
the next one gathers, so a lone message is written at once and a burst of N costs about
one transaction instead of N.

The guarantees are those of ``accept_in``, message by message:
- a caller hears "stored" only after the commit that contains its message;
- a replay (within a batch or of an earlier one) is a no-op that reports the stored row;
- two first messages from one new sender make one customer and one conversation (within
  a batch by construction; across batches and processes through the unique keys: a
  clash raises, and the batch falls back to the per-message path with its retries);
- if storing the batch fails for any reason before the commit, each message is stored
  again on its own (``accept_in``, one transaction each), so one bad message fails
  alone; if the commit itself fails, every caller of that batch gets the error (never a
  success), since nothing of it is known to be on disk;
- a caller that is cancelled or times out while waiting does not take its message out:
  the batch it is in is committed regardless (a provider retry is then a replay).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from crm_core.identity import ResolvedIds, resolve_senders
from heliograph import jobs, logs
from heliograph.db import CommitFailed, Database, insert_ids, new_row, pairs_in, utcnow
from heliograph.settings import get_settings
from inbox.ingest import AcceptResult, InboundMessage, accept_in, new_conversation, received_event
from inbox.models import Attachment, Conversation, Message

__all__ = ["CommitFailed", "IngestWriter", "store_batch", "writer_for"]

log = logging.getLogger(__name__)

MAX_BATCH = 256  # messages per transaction: bounds how long one batch holds SQLite's lock
_MESSAGE = Message.__table__  # type: ignore[attr-defined]
_CONVERSATION = Conversation.__table__  # type: ignore[attr-defined]
_ATTACHMENT = Attachment.__table__  # type: ignore[attr-defined]
_TOUCH = (
    update(_CONVERSATION)
    .where(_CONVERSATION.c.id == bindparam("cid"))
    .values(
        status="open",
        snoozed_until=None,
        identity_id=bindparam("iid"),
        last_message_at=bindparam("now"),
        updated_at=bindparam("now"),
        waiting_since=func.coalesce(_CONVERSATION.c.waiting_since, bindparam("now")),
    )
)
Waiter = tuple[InboundMessage, "asyncio.Future[AcceptResult]"]


@dataclass
class _Thread:
    """One conversation the batch writes to."""

    id: int
    status: str  # before this batch
    created: bool
    identity_id: int = 0
    announced: bool = False  # the batch's first message in it carries the event's flags


def _stored(
    conn: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Messages already stored under these dedupe keys: key -> (id, conversation, customer)."""
    rows = conn.execute(
        select(
            _MESSAGE.c.channel,
            _MESSAGE.c.provider_message_id,
            _MESSAGE.c.id,
            _MESSAGE.c.conversation_id,
            _MESSAGE.c.customer_id,
        ).where(pairs_in(_MESSAGE.c.channel, _MESSAGE.c.provider_message_id, keys))
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows.all()}


def _threads(
    conn: Connection, wanted: dict[tuple[int, str, str], tuple[ResolvedIds, InboundMessage]]
) -> dict[tuple[int, str, str], _Thread]:
    """``ingest._thread`` for every (customer, channel, thread) of the batch: the active
    conversation, else a recently resolved one (reopened), else a new one."""
    c = _CONVERSATION.c
    customers = {key[0] for key in wanted}
    rows = conn.execute(
        select(c.id, c.customer_id, c.channel, c.thread_key, c.status).where(
            c.customer_id.in_(customers), c.status != "resolved"
        )
    )
    found = {
        (r.customer_id, r.channel, r.thread_key): _Thread(r.id, r.status, False)
        for r in rows.all()
        if (r.customer_id, r.channel, r.thread_key) in wanted
    }
    missing = [key for key in wanted if key not in found]
    if missing:
        window = timedelta(hours=get_settings().reopen_window_hours)
        rows = conn.execute(
            select(c.id, c.customer_id, c.channel, c.thread_key)
            .where(
                c.customer_id.in_({key[0] for key in missing}),
                c.status == "resolved",
                c.resolved_at >= utcnow() - window,
            )
            .order_by(c.resolved_at.desc())
        )
        reopen: dict[tuple[int, str, str], int] = {}
        for r in rows.all():
            key = (r.customer_id, r.channel, r.thread_key)
            if key in wanted and key not in found:
                reopen.setdefault(key, r.id)
        if reopen:
            conn.execute(
                update(_CONVERSATION)
                .where(c.id.in_(reopen.values()))
                .values(status="open", resolved_at=None)
            )
            found.update({key: _Thread(cid, "resolved", False) for key, cid in reopen.items()})
    new = [key for key in wanted if key not in found]
    if new:
        rows_in = []
        for key in new:
            resolved, msg = wanted[key]
            values = new_conversation(
                msg, resolved.customer_id, resolved.identity_id, resolved.language, resolved.vip
            )
            rows_in.append(new_row(Conversation, **values))
        # The new conversations are open, so (customer, channel, thread) is unique among them.
        ids = insert_ids(conn, _CONVERSATION, rows_in, key=("customer_id", "channel", "thread_key"))
        found.update({key: _Thread(cid, "open", True) for key, cid in zip(new, ids, strict=True)})
    return found


def store_batch(conn: Connection, msgs: Sequence[InboundMessage]) -> list[AcceptResult]:
    """Store ``msgs`` in the connection's transaction with set-based Core statements; one
    result per message, in order. Raises on any clash (the caller rolls back and falls
    back to ``accept_in``, message by message)."""
    keys = [(m.channel, m.provider_message_id) for m in msgs]
    stored = _stored(conn, list(dict.fromkeys(keys)))
    fresh: dict[tuple[str, str], InboundMessage] = {}
    for key, msg in zip(keys, msgs, strict=True):
        if key not in stored:
            fresh.setdefault(key, msg)
    new = list(fresh.values())
    resolved = resolve_senders(conn, [m.sender for m in new]) if new else []
    wanted: dict[tuple[int, str, str], tuple[ResolvedIds, InboundMessage]] = {}
    for who, msg in zip(resolved, new, strict=True):
        wanted.setdefault((who.customer_id, msg.channel, msg.thread_key), (who, msg))
    threads = _threads(conn, wanted) if wanted else {}
    ids = _insert_messages(conn, resolved, new, threads)
    events: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    for message_id, who, msg in zip(ids, resolved, new, strict=True):
        thread = threads[(who.customer_id, msg.channel, msg.thread_key)]
        first, thread.announced = not thread.announced, True
        stored[(msg.channel, msg.provider_message_id)] = (message_id, thread.id, who.customer_id)
        job_rows += _attachments(conn, message_id, msg)
        events.append(
            received_event(
                message_id,
                thread.id,
                who.customer_id,
                msg,
                created=first and thread.created,
                reopened=first and not thread.created and thread.status != "open",
            )
        )
    if threads:
        now = utcnow()
        conn.execute(
            _TOUCH, [{"cid": t.id, "iid": t.identity_id, "now": now} for t in threads.values()]
        )
    # One INSERT for every follow-up job of the batch, however many subscribers there are.
    job_rows += jobs.published("message.received", events)
    if job_rows:
        conn.execute(insert(jobs.JOB_TABLE), job_rows)
    created = {e["message_id"]: e["new_conversation"] for e in events}
    answers = []
    seen: set[tuple[str, str]] = set()
    for key in keys:
        message_id, conversation_id, customer_id = stored[key]
        first_time = key in fresh and key not in seen
        seen.add(key)
        answers.append(
            AcceptResult(
                message_id,
                conversation_id,
                customer_id,
                duplicate=not first_time,
                new_conversation=first_time and created.get(message_id, False),
                provider_message_id=key[1],
            )
        )
    return answers


def _insert_messages(
    conn: Connection,
    resolved: list[ResolvedIds],
    msgs: list[InboundMessage],
    threads: dict[tuple[int, str, str], _Thread],
) -> list[int]:
    """One multi-row INSERT of the batch's new messages; their ids, in order."""
    if not msgs:
        return []
    rows = []
    for who, msg in zip(resolved, msgs, strict=True):
        thread = threads[(who.customer_id, msg.channel, msg.thread_key)]
        thread.identity_id = who.identity_id  # the last message's identity is answered
        rows.append(
            {
                "conversation_id": thread.id,
                "customer_id": who.customer_id,
                "channel": msg.channel,
                "direction": "in",
                "author_type": "customer",
                "text": msg.text,
                "provider_message_id": msg.provider_message_id,
                "sent_at": msg.sent_at,
                "raw": msg.raw,
            }
        )
    return insert_ids(conn, _MESSAGE, rows, key=("channel", "provider_message_id"))


def _attachments(conn: Connection, message_id: int, msg: InboundMessage) -> list[dict[str, Any]]:
    """Store the message's attachments; returns the rows of their fetch jobs."""
    if not msg.attachments:
        return []
    rows = [new_row(Attachment, message_id=message_id, **item.__dict__) for item in msg.attachments]
    ids = insert_ids(conn, _ATTACHMENT, rows)
    return jobs.job_rows(
        [("attachment.fetch", {"attachment_id": i}, None) for i in ids],
        [f"fetch:{i}" for i in ids],
    )


class IngestWriter:
    """The one writer of a process's ``accept()`` calls on one database (group commit)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.loop = asyncio.get_running_loop()
        self._queue: list[Waiter] = []
        self._task: asyncio.Task[None] | None = None
        # What happened to the batches so far (tests and benchmarks read these).
        self.batches = self.messages = self.fallbacks = self.failures = 0

    async def submit(self, msg: InboundMessage) -> AcceptResult:
        future: asyncio.Future[AcceptResult] = self.loop.create_future()
        self._queue.append((msg, future))
        if self._task is None:
            self._task = self.loop.create_task(self._run())
        # A cancelled caller cancels only its future: the message stays queued (or in the
        # batch being written) and is committed all the same.
        return await future

    async def idle(self) -> None:
        """Wait until everything submitted so far is written (or has failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        first = True
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                if len(batch) > 1 or not first:  # its jobs are not (only) the starter's request's
                    logs.request_id_var.set(None)
                first = False
                await self._write(batch)
        finally:
            self._task = None

    async def _write(self, batch: list[Waiter]) -> None:
        msgs = [msg for msg, _ in batch]
        jobs.foreground_active()
        try:
            results = await self.db.run_transaction(
                lambda conn: store_batch(conn, msgs), priority=True
            )
        except CommitFailed as exc:
            self.failures += 1
            for waiter in batch:
                _answer(waiter, exc)
            return
        except Exception:
            log.warning(
                "a batch of %d inbound messages failed; storing them one by one",
                len(msgs),
                exc_info=True,
            )
            self.fallbacks += 1
            await self._one_by_one(batch)
            return
        self.batches += 1
        self.messages += len(msgs)
        if any(not r.duplicate for r in results):
            jobs.wake_workers()
        for waiter, result in zip(batch, results, strict=True):
            _answer(waiter, result)

    async def _one_by_one(self, batch: list[Waiter]) -> None:
        for waiter in batch:
            try:
                async with self.db.session(priority=True) as session:
                    result = await accept_in(session, waiter[0])
                    try:
                        await session.commit()
                    except Exception as exc:
                        raise CommitFailed(f"the commit failed: {exc}") from exc
            except Exception as exc:
                _answer(waiter, exc)
                continue
            if not result.duplicate:
                jobs.wake_workers()
            _answer(waiter, result)


def _answer(waiter: Waiter, outcome: AcceptResult | Exception) -> None:
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
