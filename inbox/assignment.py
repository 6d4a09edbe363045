"""Who holds which conversation: the reads and writes routing needs on conversations.

The inbox owns the conversation table; routing decides, and calls these to look and to
record. "Open" for an agent's load means assigned and not resolved (pending and snoozed
still belong to someone). The queue is every unassigned conversation that is open or
pending; a snoozed one joins it when it wakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, case, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.conversations import ConversationNotFound
from inbox.models import PRIORITIES, Conversation, Message

# Most urgent first.
PRIORITY_ORDER = {p: i for i, p in enumerate(reversed(PRIORITIES))}
_NOT_RESOLVED = Conversation.status != "resolved"
_WAITED_FROM = func.coalesce(Conversation.waiting_since, Conversation.created_at)


def priority_rank(priority: str) -> int:
    return PRIORITY_ORDER.get(priority, len(PRIORITY_ORDER))


async def lock_conversation(session: AsyncSession, conversation_id: int) -> Conversation:
    """The conversation, re-read and locked for this transaction (FOR UPDATE on
    PostgreSQL; SQLite write transactions are serialised already)."""
    stmt = select(Conversation).where(Conversation.id == conversation_id)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (
        await session.execute(stmt.execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if row is None:
        raise ConversationNotFound(f"conversation {conversation_id} does not exist")
    return row


async def lock_conversations(session: AsyncSession, ids: list[int]) -> list[Conversation]:
    """Several conversations, re-read and locked in id order (so two batches that
    overlap wait for each other instead of deadlocking). Missing ids are skipped."""
    if not ids:
        return []
    stmt = select(Conversation).where(Conversation.id.in_(ids)).order_by(Conversation.id)  # type: ignore[union-attr]
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = await session.execute(stmt.execution_options(populate_existing=True))
    return list(rows.scalars().all())


def set_assignee(conversation: Conversation, member_id: int | None, at: datetime) -> int | None:
    """Give the conversation to ``member_id`` (None: nobody). Returns the previous one."""
    previous = conversation.assignee_id
    conversation.assignee_id = member_id
    conversation.assigned_at = at if member_id is not None else None
    conversation.updated_at = at
    return previous


def add_topic_tags(conversation: Conversation, tags: list[str]) -> bool:
    """Add tags not there yet (order kept); True when something was added."""
    new = [t for t in dict.fromkeys(tags) if t not in conversation.topic_tags]
    if new:
        conversation.topic_tags = [*conversation.topic_tags, *new]
    return bool(new)


def raise_priority(conversation: Conversation, at_least: str) -> bool:
    if priority_rank(at_least) < priority_rank(conversation.priority):
        conversation.priority = at_least
        return True
    return False


async def open_loads(
    session: AsyncSession, per_channel: bool = False, member_ids: list[int] | None = None
) -> dict[tuple[int, str], int]:
    """Open conversations per ``(assignee, channel)`` (channel "" unless ``per_channel``),
    for every assignee or only ``member_ids``: one GROUP BY over the partial index
    ``ix_conversation_open_assignee``."""
    if member_ids is not None and not member_ids:
        return {}
    columns = (
        [Conversation.assignee_id, Conversation.channel]
        if per_channel
        else [Conversation.assignee_id]
    )
    assignee = (
        Conversation.assignee_id.is_not(None)  # type: ignore[union-attr]
        if member_ids is None
        else Conversation.assignee_id.in_(member_ids)  # type: ignore[union-attr]
    )
    rows = await session.execute(
        select(*columns, func.count()).where(_NOT_RESOLVED, assignee).group_by(*columns)
    )
    if per_channel:
        return {(r[0], r[1]): r[2] for r in rows.all()}
    return {(r[0], ""): r[1] for r in rows.all()}


def open_load_query(member_id: int, channel: str | None = None) -> Select[tuple[int]]:
    """``SELECT count(*)`` of the member's open conversations (on ``channel`` only, when
    given); also usable as a scalar subquery inside routing's own statements."""
    stmt = select(func.count()).where(_NOT_RESOLVED, Conversation.assignee_id == member_id)
    if channel is not None:
        stmt = stmt.where(Conversation.channel == channel)
    return stmt


async def open_load(session: AsyncSession, member_id: int, channel: str | None = None) -> int:
    """The member's open conversations now (on ``channel`` only, when given)."""
    return int((await session.execute(open_load_query(member_id, channel))).scalar_one())


def _queued_filter():  # type: ignore[no-untyped-def]
    # Spelled with "<> 'resolved'" so the partial index on open conversations applies.
    return and_(
        _NOT_RESOLVED,
        Conversation.status != "snoozed",
        Conversation.assignee_id.is_(None),  # type: ignore[union-attr]
    )


async def queued(session: AsyncSession, limit: int = 500) -> list[Conversation]:
    """The queue: unassigned open conversations, most urgent first, then longest waiting."""
    rank = case(PRIORITY_ORDER, value=Conversation.priority, else_=len(PRIORITY_ORDER))
    rows = await session.execute(
        select(Conversation)
        .where(_queued_filter())
        .order_by(rank, _WAITED_FROM, Conversation.id)
        .limit(limit)
    )
    return list(rows.scalars().all())


async def queue_size(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many wait, and since when the longest-waiting one waits."""
    row = (
        await session.execute(select(func.count(), func.min(_WAITED_FROM)).where(_queued_filter()))
    ).one()
    return int(row[0]), row[1]


async def unanswered(
    session: AsyncSession, now: datetime, minutes_by_priority: Mapping[str, float], limit: int = 500
) -> list[Conversation]:
    """Assigned open conversations whose agent has not replied since the assignment, for
    longer than the priority's limit (0 or missing: never).

    An agent's reply clears ``waiting_since`` and a later customer message sets it anew,
    so ``waiting_since <= assigned_at`` means nobody answered since it was assigned.
    """
    windows = [
        and_(
            Conversation.priority == priority,
            Conversation.assigned_at <= now - timedelta(minutes=minutes),  # type: ignore[operator]
        )
        for priority, minutes in minutes_by_priority.items()
        if minutes and minutes > 0
    ]
    if not windows:
        return []
    rows = await session.execute(
        select(Conversation)
        .where(
            Conversation.status == "open",
            Conversation.assignee_id.is_not(None),  # type: ignore[union-attr]
            Conversation.waiting_since.is_not(None),  # type: ignore[union-attr]
            Conversation.waiting_since <= Conversation.assigned_at,  # type: ignore[operator]
            or_(*windows),
        )
        .order_by(Conversation.assigned_at)
        .limit(limit)
    )
    return list(rows.scalars().all())


def is_unanswered(
    conversation: Conversation, now: datetime, minutes_by_priority: Mapping[str, float]
) -> bool:
    """``unanswered``'s test on one (locked, fresh) conversation."""
    minutes = minutes_by_priority.get(conversation.priority) or 0
    return bool(
        minutes > 0
        and conversation.status == "open"
        and conversation.assignee_id is not None
        and conversation.assigned_at is not None
        and conversation.waiting_since is not None
        and conversation.waiting_since <= conversation.assigned_at
        and conversation.assigned_at <= now - timedelta(minutes=minutes)
    )


async def open_conversations_of(session: AsyncSession, member_id: int) -> list[Conversation]:
    """A member's conversations that are not resolved (what a handoff moves)."""
    rows = await session.execute(
        select(Conversation)
        .where(_NOT_RESOLVED, Conversation.assignee_id == member_id)
        .order_by(Conversation.id)
    )
    return list(rows.scalars().all())


async def message_texts(session: AsyncSession, message_ids: list[int]) -> dict[int, str]:
    """``{message id: its text ("" for none)}`` in one query (missing ones left out)."""
    if not message_ids:
        return {}
    rows = await session.execute(
        select(Message.id, Message.text).where(Message.id.in_(sorted(set(message_ids))))  # type: ignore[union-attr]
    )
    return {message_id: text or "" for message_id, text in rows.all()}
