"""Delivering replies: the ``outbox.deliver`` job and the registry of channel senders.

Senders live in ``bots/`` (one per channel) and register here, so the inbox never
imports a provider. Delivery is at-least-once with the message id as idempotency key:
a worker that dies between the provider's 200 and our commit sends again after its
lease expires; every sender passes the id along so the receiver can drop the repeat.
Within a conversation replies leave in the order they were written.

Time stamps (docs/operations.md): a reply's ``created_at`` is when it was queued (its
outbox job is written in the same transaction, ``inbox.conversations.reply``), and
``accepted_at`` when its provider accepted it (the sender returned); it stays NULL while
the reply waits or is retried, and for good when the provider refused it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.reads import identities_by_id
from heliograph import jobs
from heliograph.bulk import pairs_in
from heliograph.db import get_db, utcnow
from inbox import translation
from inbox.attachments_out import SentFile, outgoing_of
from inbox.bus import DELIVER_REPLY, MessageRef, pages_changed
from inbox.models import DELIVERY_DONE, Conversation, Message


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


async def _earlier_pending(session: AsyncSession, message: Message) -> bool:
    row = await session.execute(
        select(Message.id).where(
            Message.conversation_id == message.conversation_id,
            Message.direction == "out",
            Message.id < message.id,  # type: ignore[operator]
            Message.delivery_status.in_(("queued", "sending")),  # type: ignore[attr-defined]
        )
    )
    return row.first() is not None


async def _mark(message_id: int, **values: object) -> None:
    async with get_db().session() as session:
        result = await session.execute(
            update(Message)
            .where(
                Message.id == message_id,
                Message.delivery_status.not_in(DELIVERY_DONE),  # type: ignore[attr-defined]
            )
            .values(**values)
            .returning(Message.conversation_id)
        )
        conversation_id = result.scalar()
        await session.commit()
    if conversation_id is not None:  # the thread's page shows the reply's delivery status
        pages_changed(conversation_id, inbox=False)


async def _prepare(message_id: int) -> OutboundMessage | None:
    async with get_db().read_session() as session:
        message = await session.get(Message, message_id)
        if message is None or message.delivery_status in DELIVERY_DONE:
            return None  # already sent (a replayed job): nothing to do
        # A "failed" reply runs again only when an operator retries its dead job: send it.
        if await _earlier_pending(session, message):
            raise jobs.Defer("an earlier reply in this conversation is still on its way")
        # A reply being translated waits for it, up to translation_reply_wait_s.
        awaits_translation = message.translation_status == "pending"
        conversation = await session.get(Conversation, message.conversation_id)
        assert conversation is not None
        identity_id = conversation.identity_id
        recipient = (await identities_by_id(session, [identity_id])).get(identity_id)  # type: ignore[arg-type]
        reply_context = (
            await session.execute(
                select(Message.raw)
                .where(Message.conversation_id == conversation.id, Message.direction == "in")
                .order_by(Message.id.desc())  # type: ignore[union-attr]
                .limit(1)
            )
        ).scalar()
        files = await outgoing_of(session, message_id)
    if awaits_translation:
        await translation.hold_reply(message)  # defers, or lets it go out as written
    if recipient is None:
        raise DeliveryRefused("the conversation has no identity to reply to")
    if recipient.opted_out:
        raise DeliveryRefused(f"the customer opted out of {recipient.channel} (STOP)")
    if recipient.unreachable_reason:
        raise DeliveryRefused(f"unreachable on {recipient.channel}: {recipient.unreachable_reason}")
    return OutboundMessage(
        message_id=message_id,
        conversation_id=conversation.id,  # type: ignore[arg-type]
        channel=message.channel,
        recipient_id=recipient.external_id,
        text=message.text,
        thread_key=conversation.thread_key,
        subject=conversation.subject,
        reply_context=reply_context,
        author_type=message.author_type,
        attachments=tuple(files),
    )


DELIVER_AT_ONCE = 8  # replies in flight at once per channel: providers limit concurrency


@jobs.batch_handler(DELIVER_REPLY, size=100)
async def deliver_batch(batch: jobs.Batch[MessageRef]) -> None:
    """Deliver the due replies together: conversations in parallel (at most
    ``DELIVER_AT_ONCE`` calls in flight per channel), each conversation's replies in order.
    A reply that fails fails alone; the later replies of its conversation wait for it
    (deferred, not tried: the customer must not read them out of order)."""
    ids = [p.message_id for p in batch.payloads]
    async with get_db().read_session() as session:
        rows = await session.execute(
            select(Message.id, Message.conversation_id, Message.channel).where(
                Message.id.in_(ids)  # type: ignore[union-attr]
            )
        )
        where = {mid: (conversation, channel) for mid, conversation, channel in rows.all()}
    lanes: dict[int, list[int]] = {}  # one per conversation, its replies in id order
    for i, mid in sorted(enumerate(ids), key=lambda item: item[1]):
        lanes.setdefault(where.get(mid, (0, ""))[0], []).append(i)
    limits: dict[str, asyncio.Semaphore] = {}

    async def one(i: int) -> None:
        channel = where.get(ids[i], (0, ""))[1]
        async with limits.setdefault(channel, asyncio.Semaphore(DELIVER_AT_ONCE)):
            await deliver(batch.payloads[i])

    await batch.in_lanes(
        lanes.values(),
        one,
        at_once=len(lanes) or 1,  # the per-channel limits above bound the calls
        held="an earlier reply in this conversation has not gone out",
    )


async def deliver(payload: MessageRef) -> None:
    """Send one reply through its channel's sender and record what the provider said."""
    message_id = payload.message_id
    outbound = await _prepare(message_id)
    if outbound is None:
        return
    sender = _senders.get(outbound.channel)
    if sender is None:
        raise DeliveryRefused(f"no channel adapter can send on {outbound.channel!r}")
    try:
        result = await sender(outbound)
    except jobs.RetryLater as exc:
        await _mark(message_id, delivery_error=str(exc)[:500])
        raise
    accepted = utcnow()  # the provider accepted it (a refusal raised): ``accepted_at``
    await _mark(
        message_id,
        delivery_status=result.status,
        external_id=result.external_id,
        delivery_error=None,
        sent_at=accepted,
        accepted_at=accepted,
    )


@jobs.on_dead(DELIVER_REPLY)
async def _gave_up(payload: MessageRef, error: str) -> None:
    """The agent sees why a reply did not go out (on the message, not just in a log)."""
    await _mark(payload.message_id, delivery_status="failed", delivery_error=error[:500])


_STATUS_ORDER = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


@dataclass(frozen=True)
class StatusRecorded:
    """A provider's status callback that named a reply we sent."""

    message_id: int
    conversation_id: int
    changed: bool  # its delivery status moved: the thread's open pages re-render


def record_statuses(
    conn: Connection, updates: Sequence[tuple[str, str, str, str | None]]
) -> list[StatusRecorded | None]:
    """Providers' status callbacks ``(channel, external_id, status, error)``, in order:
    sent -> delivered -> read, or failed with its code. One SELECT and one UPDATE for all
    of them; for each, the reply it names (None: not a message we sent). The caller
    publishes the live event of each changed reply's conversation once it has committed
    (``inbox.ingest_batch``; ``record_status`` for one)."""
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
