"""Delivering replies: the ``outbox.deliver`` job and the registry of channel senders.

Senders live in ``bots/`` (one per channel) and register here, so the inbox never
imports a provider. Delivery is at-least-once with the message id as idempotency key:
a worker that dies between the provider's 200 and our commit sends again after its
lease expires; every sender passes the id along so the receiver can drop the repeat.
Within a conversation replies leave in the order they were written. The due replies go
out as a batch (``deliver_batch``, issue #17): read together, sent conversation by
conversation side by side, and recorded in one commit that also marks their jobs done
(sooner, as they go, when a batch takes long: a provider's status callback must find them).

A provider may call back with a reply's status (sent, delivered, read, failed) before that
commit has written the id it gave the reply. ``record_statuses`` keeps such a callback
(``EarlyStatus``) instead of dropping it, and the transaction that writes the reply's id
applies what was kept for it, by the same rule, and deletes it. A callback that raced that
transaction (each missed the other's uncommitted row, PostgreSQL) is applied by the periodic
``settle_early_statuses``, which also deletes what found no reply within
``EARLY_STATUS_KEPT`` (a message that was not ours).

Time stamps (docs/operations.md): a reply's ``created_at`` is when it was queued (its
outbox job is written in the same transaction, ``inbox.conversations.reply``), and
``accepted_at`` when its provider accepted it (the sender returned); it stays NULL while
the reply waits or is retried, and for good when the provider refused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, delete, exists, func, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Identity
from crm_core.reads import identities_by_id
from heliograph import jobs
from heliograph.bulk import insert_new, new_row, pairs_in
from heliograph.db import get_db, utcnow
from inbox import reads as inbox_reads
from inbox import translation
from inbox.attachments_out import SentFile, outgoing_of
from inbox.bus import DELIVER_REPLY, MessageRef, pages_changed
from inbox.models import DELIVERY_DONE, Attachment, Conversation, EarlyStatus, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundMessage:
    message_id: int
    conversation_id: int
    channel: str
    recipient_id: str  # the identity's external id on the channel
    text: str
    thread_key: str = ""
    subject: str | None = None
    # The provider payload of the customer's latest message in this conversation: what a
    # channel needs to answer in place (Slack thread_ts, email Message-ID, WhatsApp context).
    reply_context: dict[str, Any] | None = None
    author_type: str = "agent"  # "system" for automatic messages (RFC 3834 marks those)
    # Files an agent attached (#16): each sender sends them the way its provider documents.
    attachments: tuple[SentFile, ...] = ()


@dataclass(frozen=True)
class DeliveryResult:
    external_id: str | None = None
    status: str = "sent"  # "delivered" where the provider's 2xx already means delivered


Sender = Callable[[OutboundMessage], Awaitable[DeliveryResult]]
_senders: dict[str, Sender] = {}


class DeliveryRetry(jobs.RetryLater):
    """The provider failed for a passing reason (5xx, 429, timeout)."""


class DeliveryRefused(jobs.PermanentFailure):
    """The provider refused for good (bad recipient, blocked); retrying cannot help."""


def register_sender(channel: str, sender: Sender) -> None:
    _senders[channel] = sender


def sender_channels() -> list[str]:
    return sorted(_senders)


@dataclass(frozen=True)
class _Due:
    """A reply still to send, read with everything its send needs (``_prepare``)."""

    message: Message
    conversation: Conversation
    recipient: Identity | None
    # The earlier replies of its conversation that were queued or sending when it was read:
    # it goes out only once each is sent (by this batch, before it in its lane).
    waits_for: frozenset[int]
    reply_context: dict[str, Any] | None
    files: tuple[SentFile, ...]


async def _earlier_pending(
    session: AsyncSession, messages: Sequence[Message]
) -> dict[int, frozenset[int]]:
    """``{reply id: the earlier replies of its conversation still queued or sending}``,
    in one query for all of them."""
    if not messages:
        return {}
    rows = await session.execute(
        select(col(Message.conversation_id), col(Message.id)).where(
            col(Message.conversation_id).in_(sorted({m.conversation_id for m in messages})),
            col(Message.direction) == "out",
            col(Message.id) < max(m.id for m in messages),  # type: ignore[type-var]
            col(Message.delivery_status).in_(("queued", "sending")),
        )
    )
    pending: dict[int, list[int]] = {}
    for conversation_id, message_id in rows.all():
        pending.setdefault(conversation_id, []).append(message_id)
    return {
        m.id: frozenset(e for e in pending.get(m.conversation_id, ()) if e < m.id)  # type: ignore[operator, misc]
        for m in messages
    }


async def _reply_contexts(
    session: AsyncSession, conversation_ids: Collection[int]
) -> dict[int, dict[str, Any] | None]:
    """``{conversation id: the provider payload of the customer's latest message}`` (what
    a channel needs to answer in place), in one query."""
    latest = (
        select(func.max(Message.id))
        .where(col(Message.conversation_id).in_(conversation_ids), col(Message.direction) == "in")
        .group_by(col(Message.conversation_id))
    )
    rows = await session.execute(
        select(col(Message.conversation_id), col(Message.raw)).where(
            col(Message.id).in_(latest.scalar_subquery())
        )
    )
    return dict(rows.all())


async def _files(session: AsyncSession, message_ids: Collection[int]) -> dict[int, list[SentFile]]:
    """``{reply id: the files an agent attached (#16)}`` of the replies that have any: one
    query finds them, ``outgoing_of`` reads each one's."""
    with_files = await session.execute(
        select(col(Attachment.message_id))
        .where(col(Attachment.message_id).in_(message_ids), col(Attachment.direction) == "out")
        .distinct()
    )
    return {mid: await outgoing_of(session, mid) for mid in with_files.scalars().all()}


async def _prepare(message_ids: Collection[int]) -> dict[int, _Due]:
    """The replies of ``message_ids`` still to send, read in one session with one query per
    kind of thing their sends need. A reply already sent (a replayed job) or gone is left
    out: nothing to do. A "failed" one runs again only when an operator retries its dead
    job: it is sent."""
    async with get_db().read_session() as session:
        found = await inbox_reads.messages_by_id(session, message_ids)
        messages = [m for m in found.values() if m.delivery_status not in DELIVERY_DONE]
        if not messages:
            return {}
        conversation_ids = sorted({m.conversation_id for m in messages})
        conversations = await inbox_reads.conversations_by_id(session, conversation_ids)
        recipients = await identities_by_id(
            session, [c.identity_id for c in conversations.values()]
        )
        waits_for = await _earlier_pending(session, messages)
        contexts = await _reply_contexts(session, conversation_ids)
        files = await _files(session, [m.id for m in messages])
    due: dict[int, _Due] = {}
    for m in messages:
        conversation = conversations[m.conversation_id]
        due[m.id] = _Due(
            message=m,
            conversation=conversation,
            recipient=recipients.get(conversation.identity_id),
            waits_for=waits_for[m.id],
            reply_context=contexts.get(m.conversation_id),
            files=tuple(files.get(m.id, ())),
        )
    return due


def _outbound(due: _Due) -> OutboundMessage:
    """What the sender gets, or ``DeliveryRefused`` when the customer cannot get it."""
    recipient, message, conversation = due.recipient, due.message, due.conversation
    if recipient is None:
        raise DeliveryRefused("the conversation has no identity to reply to")
    if recipient.opted_out:
        raise DeliveryRefused(f"the customer opted out of {recipient.channel} (STOP)")
    if recipient.unreachable_reason:
        raise DeliveryRefused(f"unreachable on {recipient.channel}: {recipient.unreachable_reason}")
    return OutboundMessage(
        message_id=message.id,  # type: ignore[arg-type]
        conversation_id=conversation.id,  # type: ignore[arg-type]
        channel=message.channel,
        recipient_id=recipient.external_id,
        text=message.text,
        thread_key=conversation.thread_key,
        subject=conversation.subject,
        reply_context=due.reply_context,
        author_type=message.author_type,
        attachments=due.files,
    )


async def _record(session: AsyncSession, marks: Mapping[int, Mapping[str, object]]) -> set[int]:
    """Write what became of each reply (``{message id: its column values}``) in
    ``session``'s transaction, one executemany per shape of values. A reply already sent
    keeps its record: a late or replayed outcome never undoes a success. The status
    callbacks kept for the provider ids written here are applied and deleted in the same
    transaction (``_settle``); returns the conversations whose reply they changed."""
    table = Message.__table__  # type: ignore[attr-defined]
    shapes: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for message_id, values in marks.items():
        row = {"mid": message_id, **{f"v_{k}": v for k, v in values.items()}}
        shapes.setdefault(tuple(sorted(values)), []).append(row)
    for keys, rows in shapes.items():
        await session.execute(
            update(table)
            .where(
                table.c.id == bindparam("mid"),
                # NOT IN, spelled out: an expanding IN cannot be executed many times
                *(table.c.delivery_status != status for status in DELIVERY_DONE),
            )
            .values({k: bindparam(f"v_{k}") for k in keys}),
            rows,
        )
    written = sorted({str(v["external_id"]) for v in marks.values() if v.get("external_id")})
    if not written:
        return set()
    settled = await session.run_sync(
        lambda s: _settle(s.connection(), _EARLY.c.external_id.in_(written))
    )
    return {r.conversation_id for r in settled if r.changed}


DELIVER_AT_ONCE = 8  # replies in flight at once per channel: providers limit concurrency


@jobs.batch_handler(DELIVER_REPLY, size=100)
async def deliver_batch(batch: jobs.Batch[MessageRef]) -> None:
    """Deliver the due replies together: conversations in parallel (at most
    ``DELIVER_AT_ONCE`` calls in flight per channel), each conversation's replies in order.
    A reply that fails fails alone; the later replies of its conversation wait for it
    (deferred, not tried: the customer must not read them out of order).

    The replies are read together before the first send (``_prepare``), and what became
    of them is written in one transaction after the last, the one that marks their jobs
    done (a batch still sending after ``EARLY_RECORD_S`` writes as it goes: ``_Marks``).
    A reply whose earlier reply was queued when they were read waits for it unless
    this batch sent it (before it, in its lane) meanwhile."""
    ids = [p.message_id for p in batch.payloads]
    due = await _prepare(ids)
    lanes: dict[int, list[int]] = {}  # one per conversation, its replies in id order
    for i, mid in sorted(enumerate(ids), key=lambda item: item[1]):
        if mid in due:  # the others have nothing to do
            lanes.setdefault(due[mid].conversation.id, []).append(i)  # type: ignore[arg-type]
    limits: dict[str, asyncio.Semaphore] = {}
    marks = _Marks({mid: d.conversation.id for mid, d in due.items()})  # type: ignore[misc]
    sent: set[int] = set()

    async def one(i: int) -> None:
        reply = due[ids[i]]
        message = reply.message
        if message.id in sent:
            return  # two jobs for one reply: the one before this sent it
        if reply.waits_for - sent:
            raise jobs.Defer("an earlier reply in this conversation is still on its way")
        if message.translation_status == "pending":  # a reply being translated waits for it
            await translation.hold_reply(message)  # defers, or lets it go out as written
        outbound = _outbound(reply)
        sender = _senders.get(outbound.channel)
        if sender is None:
            raise DeliveryRefused(f"no channel adapter can send on {outbound.channel!r}")
        try:
            async with limits.setdefault(outbound.channel, asyncio.Semaphore(DELIVER_AT_ONCE)):
                result = await sender(outbound)
        except jobs.RetryLater as exc:
            marks.add(outbound.message_id, {"delivery_error": str(exc)[:500]})
            raise
        accepted = utcnow()  # the provider accepted it (a refusal raised): ``accepted_at``
        marks.add(
            outbound.message_id,
            {
                "delivery_status": result.status,
                "external_id": result.external_id,
                "delivery_error": None,
                "sent_at": accepted,
                "accepted_at": accepted,
            },
        )
        sent.add(outbound.message_id)

    try:
        await batch.in_lanes(
            lanes.values(),
            one,
            at_once=len(lanes) or 1,  # the per-channel limits above bound the calls
            held="an earlier reply in this conversation has not gone out",
        )
    except BaseException:
        marks.stop()  # the jobs run again, one by one; a reply sent unrecorded is sent again
        raise
    await marks.finish(batch)


EARLY_RECORD_S = 0.5  # a batch still sending after this long writes down what it has sent


class _Marks:
    """What became of a batch's replies, written in one transaction at its end together
    with its jobs' completion. A batch that is still sending after ``EARLY_RECORD_S``
    (a slow provider, a long batch) writes what it has so far every ``EARLY_RECORD_S``:
    a provider's status callback names the reply by the id the provider gave it, and is
    applied at once when it finds it written (``record_statuses``; one that comes sooner is
    kept until then), and an agent sees "sent" when it is."""

    def __init__(self, conversation_of: Mapping[int, int]) -> None:
        self.conversation_of = conversation_of
        self.todo: dict[int, Mapping[str, object]] = {}
        self._early: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def add(self, message_id: int, values: Mapping[str, object]) -> None:
        self.todo[message_id] = values
        if self._early is None:
            self._early = asyncio.create_task(self._write_early())

    def _take(self) -> dict[int, Mapping[str, object]]:
        taken, self.todo = self.todo, {}
        return taken

    def _changed(self, written: Collection[int], settled: Collection[int]) -> None:
        """After the commit: the threads of the replies written, and of those that a kept
        status callback changed (``settled``, conversation ids)."""
        conversations = {self.conversation_of[mid] for mid in written} | set(settled)
        for conversation_id in sorted(conversations):
            pages_changed(conversation_id, inbox=False)  # the thread shows each reply's state

    async def _write_early(self) -> None:
        while True:
            await asyncio.sleep(EARLY_RECORD_S)
            async with self._writing:
                early = self._take()
                if not early:
                    continue
                try:
                    settled = await get_db().run_session(partial(_record, marks=early))
                except Exception:  # left for the batch's own commit at its end
                    log.warning("recording a batch's replies early failed", exc_info=True)
                    self.todo = {**early, **self.todo}
                    return
            self._changed(early, settled)

    def stop(self) -> None:
        if self._early is not None:
            self._early.cancel()

    async def finish(self, batch: jobs.Batch[MessageRef]) -> None:
        """Write the rest, and mark the batch's jobs done in the same commit."""
        async with self._writing:  # an early write under way ends first
            self.stop()
            rest = self._take()
            if not rest:
                return  # nothing (more) to write: the worker marks the jobs done

            async def record(session: AsyncSession) -> set[int]:
                settled = await _record(session, rest)
                await batch.complete_in(session)  # done in the commit of their sends
                return settled

            settled = await get_db().run_session(record)
        self._changed(rest, settled)


@jobs.on_dead(DELIVER_REPLY)
async def _gave_up(payload: MessageRef, error: str) -> None:
    """The agent sees why a reply did not go out (on the message, not just in a log)."""
    marks = {payload.message_id: {"delivery_status": "failed", "delivery_error": error[:500]}}

    async def record(session: AsyncSession) -> int | None:
        await _record(session, marks)
        found = await session.execute(
            select(col(Message.conversation_id)).where(col(Message.id) == payload.message_id)
        )
        return found.scalar()

    conversation_id = await get_db().run_session(record)
    if conversation_id is not None:  # the thread's page shows the reply's delivery status
        pages_changed(conversation_id, inbox=False)


_STATUS_ORDER = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


@dataclass(frozen=True)
class StatusRecorded:
    """A provider's status callback that named a reply we sent."""

    message_id: int
    conversation_id: int
    changed: bool  # its delivery status moved: the thread's open pages re-render


Callback = tuple[str, str, str, str | None]  # (channel, external_id, status, error)


def record_statuses(conn: Connection, updates: Sequence[Callback]) -> list[StatusRecorded | None]:
    """Providers' status callbacks ``(channel, external_id, status, error)``, in order:
    sent -> delivered -> read, or failed with its code. One SELECT and one UPDATE for all
    of them; for each, the reply it names (None: no reply has that id, yet). One that names
    none is kept (``_keep``, in the same transaction) for the outbox to apply when it writes
    the id. The caller publishes the live event of each changed reply's conversation once it
    has committed (``inbox.ingest_batch``; ``record_status`` for one)."""
    recorded = _apply_statuses(conn, updates)
    _keep(conn, [u for u, r in zip(updates, recorded, strict=True) if r is None])
    return recorded


def _apply_statuses(conn: Connection, updates: Sequence[Callback]) -> list[StatusRecorded | None]:
    """``record_statuses``' rule, applied to the replies the callbacks name: a status moves
    a reply forward only, and "failed" always wins, with its error."""
    table = Message.__table__  # type: ignore[attr-defined]
    keys = list(dict.fromkeys((u[0], u[1]) for u in updates))
    rows = conn.execute(
        select(
            table.c.id,
            table.c.conversation_id,
            table.c.channel,
            table.c.external_id,
            table.c.delivery_status,
        ).where(pairs_in(table.c.channel, table.c.external_id, keys))
    ).all()
    found = {(r.channel, r.external_id): [r.id, r.delivery_status, None, False] for r in rows}
    conversation_of = {r.id: r.conversation_id for r in rows}
    named: list[list[Any] | None] = []
    for channel, external_id, status, error in updates:
        row = found.get((channel, external_id))
        named.append(row)
        if row is not None and (
            status == "failed" or _STATUS_ORDER.get(status, -1) > _STATUS_ORDER.get(row[1], -1)
        ):
            row[1], row[2], row[3] = status, error[:500] if error else error, True
    changed = [{"mid": r[0], "st": r[1], "err": r[2]} for r in found.values() if r[3]]
    if changed:
        conn.execute(
            update(table)
            .where(table.c.id == bindparam("mid"))
            .values(delivery_status=bindparam("st"), delivery_error=bindparam("err")),
            changed,
        )
    return [
        None if row is None else StatusRecorded(row[0], conversation_of[row[0]], row[3])
        for row in named
    ]


_EARLY = EarlyStatus.__table__  # type: ignore[attr-defined]
EARLY_STATUS_KEPT = timedelta(days=1)  # a kept callback that found no reply by then: deleted


def _keep(conn: Connection, updates: Sequence[Callback]) -> None:
    """Keep the callbacks that named no reply (``EarlyStatus``), one row per (id, channel,
    status): a provider's retry of one is a no-op. Only those that could still move a reply
    (from "sent" on), and only ids that a reply could have (``message.external_id``)."""
    longest = _EARLY.c.external_id.type.length
    now = utcnow()
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for channel, external_id, status, error in updates:
        if _STATUS_ORDER.get(status, -1) >= _STATUS_ORDER["sent"] and len(external_id) <= longest:
            rows.setdefault(
                (external_id, channel, status),
                new_row(
                    EarlyStatus,
                    channel=channel,
                    external_id=external_id,
                    status=status,
                    error=error[:500] if error else error,
                    received_at=now,
                ),
            )
    if rows:
        insert_new(conn, _EARLY, list(rows.values()), ["external_id", "channel", "status"])


def _settle(conn: Connection, which: ColumnElement[bool]) -> list[StatusRecorded]:
    """Apply the kept callbacks ``which`` selects, in the order they came, to the replies
    that now have their ids (``_apply_statuses``), and delete those; the others stay."""
    kept = conn.execute(
        select(_EARLY.c.id, _EARLY.c.channel, _EARLY.c.external_id, _EARLY.c.status, _EARLY.c.error)
        .where(which)
        .order_by(_EARLY.c.id)
    ).all()
    if not kept:
        return []
    recorded = _apply_statuses(conn, [(k.channel, k.external_id, k.status, k.error) for k in kept])
    applied = [k.id for k, r in zip(kept, recorded, strict=True) if r is not None]
    if applied:
        conn.execute(delete(_EARLY).where(_EARLY.c.id.in_(applied)))
    return [r for r in recorded if r is not None]


async def settle_early_statuses(session: AsyncSession) -> int:
    """In the caller's transaction: apply the kept callbacks whose reply has its id now
    (one that raced the transaction writing it), and delete those older than
    ``EARLY_STATUS_KEPT``; how many rows went. The threads of the replies it changed are
    told once the session commits."""
    message = Message.__table__  # type: ignore[attr-defined]
    has_reply = exists().where(
        message.c.channel == _EARLY.c.channel, message.c.external_id == _EARLY.c.external_id
    )

    def settle(conn: Connection) -> tuple[list[StatusRecorded], int]:
        settled = _settle(conn, has_reply)
        expired = conn.execute(
            delete(_EARLY).where(_EARLY.c.received_at < utcnow() - EARLY_STATUS_KEPT)
        )
        return settled, int(expired.rowcount)

    settled, expired = await session.run_sync(lambda s: settle(s.connection()))
    for conversation_id in sorted({r.conversation_id for r in settled if r.changed}):
        pages_changed(conversation_id, inbox=False, session=session)
    return len(settled) + expired


async def record_status(
    session: AsyncSession, channel: str, external_id: str, status: str, error: str | None = None
) -> bool:
    """``record_statuses`` for one callback in an ORM session (the thread's live event
    goes out once the session commits)."""
    update_ = (channel, external_id, status, error)
    (recorded,) = await session.run_sync(lambda s: record_statuses(s.connection(), [update_]))
    if recorded is not None and recorded.changed:
        pages_changed(recorded.conversation_id, inbox=False, session=session)
    return recorded is not None


async def outbox_lag_seconds(session: AsyncSession) -> float:
    """Age of the oldest reply still waiting to go out (0 when none is)."""
    from sqlalchemy import func

    oldest = (
        await session.execute(
            select(func.min(Message.created_at)).where(
                Message.direction == "out",
                Message.delivery_status.in_(("queued", "sending")),  # type: ignore[attr-defined]
            )
        )
    ).scalar()
    return max((utcnow() - oldest).total_seconds(), 0.0) if oldest else 0.0


async def message_counts(session: AsyncSession) -> list[tuple[str, str, str, int]]:
    """``(direction, channel, delivery_status, count)`` for every combination present."""
    from sqlalchemy import func

    rows = await session.execute(
        select(Message.direction, Message.channel, Message.delivery_status, func.count()).group_by(
            Message.direction, Message.channel, Message.delivery_status
        )
    )
    return [(d, c, s, int(n)) for d, c, s, n in rows.all()]


async def delivery_progress(message_id: int) -> dict[str, Any]:
    """What a sender noted with ``save_delivery_progress`` on an earlier try of this reply."""
    async with get_db().read_session() as session:
        raw = (await session.execute(select(Message.raw).where(Message.id == message_id))).scalar()
    progress = (raw or {}).get("delivery")
    return dict(progress) if isinstance(progress, dict) else {}


async def save_delivery_progress(message_id: int, progress: dict[str, Any]) -> None:
    """Note, committed, how far a multi-part delivery got (e.g. the parts already posted).

    A reply split into several provider messages can fail half-way; the retry reads this
    back and resumes after the last part that went out instead of sending it all again.
    Kept in the outgoing message's ``raw`` (unused for replies otherwise) under ``delivery``.
    """
    async with get_db().session() as session:
        message = await session.get(Message, message_id)
        if message is None:
            return
        message.raw = {**(message.raw or {}), "delivery": progress}
        await session.commit()


async def send_with_files(
    message: OutboundMessage,
    send_text: Callable[[], Awaitable[DeliveryResult]],
    send_file: Callable[[SentFile], Awaitable[str]],
) -> DeliveryResult:
    """A reply with attachments (#16): its text (if any) through ``send_text``, then each
    file through ``send_file`` (which returns the provider's id). What went out is noted in
    the delivery progress, so a retry never sends the text or a file twice."""
    progress = await delivery_progress(message.message_id)
    external_id = progress.get("text_id")
    if message.text.strip() and "text_id" not in progress:
        external_id = (await send_text()).external_id
        progress = {**await delivery_progress(message.message_id), "text_id": external_id}
        await save_delivery_progress(message.message_id, progress)
    files_sent: dict[str, str] = dict(progress.get("files", {}))
    for sent_file in message.attachments:
        key = str(sent_file.attachment_id)
        if key in files_sent:
            continue
        files_sent[key] = await send_file(sent_file)
        progress = {**progress, "files": files_sent}
        await save_delivery_progress(message.message_id, progress)
    first_file = next(iter(files_sent.values()), None)
    return DeliveryResult(external_id=external_id or first_file, status="sent")
