"""Use cases on a conversation: reply, note, resolve, reopen, snooze, list, read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import identity
from heliograph import jobs
from heliograph.db import utcnow
from heliograph.texts import Text
from inbox import attachments_out, listing, translation
from inbox.attachments_out import OutgoingFile
from inbox.bus import (
    CONVERSATION_STATUS_CHANGED,
    DELIVER_REPLY,
    MESSAGE_SENT,
    ConversationStatusChanged,
    MessageRef,
    MessageSent,
    deliver_key,
    pages_changed,
)
from inbox.models import STATUSES, Attachment, Conversation, Message, Note


class ConversationNotFound(LookupError):
    pass


class InvalidRequest(ValueError):
    """The request cannot be carried out as asked (the message says why)."""


async def get_conversation(session: AsyncSession, conversation_id: int) -> Conversation:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise ConversationNotFound(f"conversation {conversation_id} does not exist")
    return conversation


@dataclass
class ConversationFilter:
    status: str | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    channel: str | None = None
    customer_id: int | None = None
    before_id: int | None = None  # keyset pagination: newest first
    limit: int = 50
    # The inbox (issue #16, inbox/listing.py): a view (mine needs member_id), filters, search.
    view: str | None = None
    member_id: int | None = None
    language: str | None = None
    priority: str | None = None
    tag: str | None = None
    q: str | None = None


async def list_conversations(session: AsyncSession, f: ConversationFilter) -> list[Conversation]:
    stmt = select(Conversation)
    for condition in listing.view_conditions(f.view, f.member_id):
        stmt = stmt.where(condition)
    if f.language:
        stmt = stmt.where(Conversation.language == f.language)
    if f.priority:
        stmt = stmt.where(Conversation.priority == f.priority)
    if f.tag:
        stmt = stmt.where(listing.tag_condition(f.tag))
    for condition in await listing.search_conditions(session, f.q):
        stmt = stmt.where(condition)
    if f.status:
        stmt = stmt.where(Conversation.status == f.status)
    if f.assignee_id is not None:
        stmt = stmt.where(Conversation.assignee_id == f.assignee_id)
    if f.unassigned:
        stmt = stmt.where(Conversation.assignee_id.is_(None))  # type: ignore[union-attr]
    if f.channel:
        stmt = stmt.where(Conversation.channel == f.channel)
    if f.customer_id is not None:
        stmt = stmt.where(Conversation.customer_id == f.customer_id)
    if f.before_id is not None:
        stmt = stmt.where(Conversation.id < f.before_id)  # type: ignore[operator]
    stmt = stmt.order_by(Conversation.id.desc()).limit(f.limit)  # type: ignore[union-attr]
    return list((await session.execute(stmt)).scalars().all())


async def messages_of(
    session: AsyncSession, conversation_id: int, limit: int = 200
) -> list[Message]:
    rows = await session.execute(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(rows.scalars().all()))


async def attachments_of(session: AsyncSession, message_ids: list[int]) -> list[Attachment]:
    if not message_ids:
        return []
    rows = await session.execute(
        select(Attachment).where(Attachment.message_id.in_(message_ids))  # type: ignore[attr-defined]
    )
    return list(rows.scalars().all())


async def notes_of(session: AsyncSession, conversation_id: int) -> list[Note]:
    rows = await session.execute(
        select(Note).where(Note.conversation_id == conversation_id).order_by(Note.id)
    )
    return list(rows.scalars().all())


async def reply(
    session: AsyncSession,
    conversation_id: int,
    text: str,
    author_id: int | None,
    author_type: str = "agent",
    attachments: list[OutgoingFile] | None = None,
) -> Message:
    """Store an outgoing message and its outbox job in the caller's transaction.

    ``attachments`` are checked against the channel's limits first (``AttachmentRefused``,
    nothing stored); a reply with a file may have no text."""
    files = list(attachments or ())
    if not text.strip() and not files:
        raise InvalidRequest(Text("a reply needs some text"))
    conversation = await get_conversation(session, conversation_id)
    attachments_out.check(conversation.channel, files)
    now = utcnow()
    message = Message(
        conversation_id=conversation.id,  # type: ignore[arg-type]
        customer_id=conversation.customer_id,
        channel=conversation.channel,
        direction="out",
        author_type=author_type,
        author_id=author_id,
        text=text,
        delivery_status="queued",
    )
    session.add(message)
    await session.flush()
    if files:
        await attachments_out.store(session, message.id, files)  # type: ignore[arg-type]
    await translation.prepare_reply(session, conversation, message)
    if author_type == "agent":
        conversation.first_response_at = conversation.first_response_at or now
        conversation.waiting_since = None
    if conversation.status in ("pending", "snoozed"):
        conversation.status, conversation.snoozed_until = "open", None
    conversation.last_message_at = conversation.updated_at = now
    await jobs.enqueue(
        session,
        DELIVER_REPLY,
        MessageRef(message_id=message.id),  # type: ignore[arg-type]
        dedupe_key=deliver_key(message.id),  # type: ignore[arg-type]
    )
    await jobs.publish(
        session,
        MESSAGE_SENT,
        MessageSent(
            message_id=message.id,  # type: ignore[arg-type]
            conversation_id=conversation.id,  # type: ignore[arg-type]
            author_id=author_id,
        ),
    )
    _live(session, conversation.id)  # type: ignore[arg-type]
    return message


async def add_note(
    session: AsyncSession, conversation_id: int, text: str, author_id: int | None
) -> Note:
    if not text.strip():
        raise InvalidRequest(Text("a note needs some text"))
    conversation = await get_conversation(session, conversation_id)
    note = Note(conversation_id=conversation.id, author_id=author_id, text=text)  # type: ignore[arg-type]
    session.add(note)
    conversation.updated_at = utcnow()
    await session.flush()
    _live(session, conversation.id)  # type: ignore[arg-type]
    return note


async def set_status(
    session: AsyncSession,
    conversation_id: int,
    status: str,
    snoozed_until: datetime | None = None,
) -> Conversation:
    if status not in STATUSES:
        raise InvalidRequest(Text("status must be one of %(choices)s", choices=list(STATUSES)))
    conversation = await get_conversation(session, conversation_id)
    now = utcnow()
    if status == "snoozed":
        if snoozed_until is None or snoozed_until <= now:
            raise InvalidRequest(Text("snooze needs a time in the future ('until')"))
        conversation.snoozed_until = snoozed_until
    else:
        conversation.snoozed_until = None
    if status == "resolved":
        conversation.resolved_at = now
        conversation.waiting_since = None
    elif conversation.status == "resolved":
        await _ensure_no_other_active(session, conversation)
        conversation.resolved_at = None
    previous = conversation.status
    conversation.status = status
    conversation.updated_at = now
    await session.flush()
    if previous != status:
        await jobs.publish(
            session,
            CONVERSATION_STATUS_CHANGED,
            ConversationStatusChanged(
                conversation_id=conversation.id,  # type: ignore[arg-type]
                from_=previous,
                to=status,
            ),
        )
    _live(session, conversation.id)  # type: ignore[arg-type]
    return conversation


def _live(session: AsyncSession, conversation_id: int) -> None:
    """Once the caller commits: the open pages of the inbox and of this thread refresh."""
    pages_changed(conversation_id, session=session)


async def _ensure_no_other_active(session: AsyncSession, conversation: Conversation) -> None:
    other = await session.execute(
        select(Conversation.id).where(
            Conversation.customer_id == conversation.customer_id,
            Conversation.channel == conversation.channel,
            Conversation.thread_key == conversation.thread_key,
            Conversation.status != "resolved",
            Conversation.id != conversation.id,
        )
    )
    other_id = other.scalar()
    if other_id is not None:
        raise InvalidRequest(
            Text(
                "conversation %(id)s with this customer on %(channel)s is already open; "
                "continue there",
                id=other_id,
                channel=conversation.channel,
            )
        )


async def wake_snoozed(session: AsyncSession) -> int:
    """Snoozed conversations whose time has come are open again (scheduler, every minute)."""
    result = await session.execute(
        update(Conversation)
        .where(Conversation.status == "snoozed", Conversation.snoozed_until <= utcnow())  # type: ignore[operator]
        .values(status="open", snoozed_until=None, updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _move_conversations(
    session: AsyncSession, source_id: int, target_id: int
) -> dict[str, int]:
    """Merge hook: the source customer's conversations and messages follow to the target."""
    active = select(Conversation).where(Conversation.status != "resolved")
    target_active = {
        (c.channel, c.thread_key): c
        for c in (await session.execute(active.where(Conversation.customer_id == target_id)))
        .scalars()
        .all()
    }
    folded = 0
    for conv in (
        (await session.execute(active.where(Conversation.customer_id == source_id))).scalars().all()
    ):
        keep = target_active.get((conv.channel, conv.thread_key))
        if keep is None:
            continue
        # Both were open on the same channel: one thread, not two.
        await session.execute(
            update(Message)
            .where(Message.conversation_id == conv.id)
            .values(conversation_id=keep.id)
        )
        await session.execute(
            update(Note).where(Note.conversation_id == conv.id).values(conversation_id=keep.id)
        )
        conv.status, conv.resolved_at = "resolved", utcnow()
        folded += 1
    await session.flush()
    moved = await session.execute(
        update(Conversation)
        .where(Conversation.customer_id == source_id)
        .values(customer_id=target_id)
    )
    await session.execute(
        update(Message).where(Message.customer_id == source_id).values(customer_id=target_id)
    )
    return {"conversations": int(moved.rowcount), "conversations_folded": folded}  # type: ignore[attr-defined]


identity.merge_hooks.append(_move_conversations)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Conversation.status, func.count()).group_by(Conversation.status)
    )
    return {status: count for status, count in rows.all()}


PRIORITIES = ("low", "normal", "high", "urgent")


async def set_priority(session: AsyncSession, conversation_id: int, priority: str) -> Conversation:
    if priority not in PRIORITIES:
        raise InvalidRequest(Text("priority must be one of %(choices)s", choices=list(PRIORITIES)))
    conversation = await get_conversation(session, conversation_id)
    conversation.priority = priority
    conversation.updated_at = utcnow()
    await session.flush()
    _live(session, conversation.id)  # type: ignore[arg-type]
    return conversation


async def set_tags(session: AsyncSession, conversation_id: int, tags: list[str]) -> Conversation:
    """Replace the conversation's tags (trimmed, lower case, no duplicates, order kept)."""
    clean: list[str] = []
    for t in tags:
        t = t.strip().lower()[:40]
        if t and t not in clean:
            clean.append(t)
    conversation = await get_conversation(session, conversation_id)
    conversation.topic_tags = clean
    conversation.updated_at = utcnow()
    await session.flush()
    _live(session, conversation.id)  # type: ignore[arg-type]
    return conversation


async def retry_delivery(session: AsyncSession, message_id: int) -> bool:
    """A failed reply goes back to the outbox: its dead delivery job is queued again
    (``jobs.retry_dead_keyed``, as the admin's retry) and the message shows queued."""
    message = await session.get(Message, message_id)
    if message is None or message.direction != "out" or message.delivery_status != "failed":
        return False
    if not await jobs.retry_dead_keyed(session, deliver_key(message_id)):
        return False
    message.delivery_status, message.delivery_error = "queued", None
    await session.flush()
    return True
