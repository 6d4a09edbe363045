"""inbox's tables as other packages read them: conversation counts, spans and lists for
the team's reports, and a conversation's last messages and notes for a handoff.

Batch reads take lists of ids (one query whatever their number). Where a report needs a
column another package owns (the assignee's name), the caller passes that owner's column
expression (``Lookup``: the id column in, a scalar subquery out) and inbox embeds it, so
the report stays one query and neither package spells the other's tables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, bindparam, func, literal, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from inbox.models import Conversation, Message, Note

Lookup = Callable[[Any], Any]  # an owner's scalar subquery over an id column
Key = tuple[str, int | None]  # (channel, assignee_id)
Span = tuple[str, int | None, datetime, datetime]  # (channel, assignee_id, start, end)


def _looked_up(lookup: Lookup | None, column: Any) -> Any:
    return literal(None) if lookup is None else lookup(column)


async def open_count(session: AsyncSession) -> int:
    """Conversations not resolved."""
    found = await session.execute(select(func.count()).where(Conversation.status != "resolved"))  # type: ignore[arg-type]
    return int(found.scalar_one())


def _late(now: datetime, targets: Mapping[str, float]) -> Any:
    late = [
        (Conversation.priority == p) & (Conversation.created_at <= now - timedelta(minutes=m))  # type: ignore[operator]
        for p, m in targets.items()
    ]
    return and_(
        Conversation.status.in_(("open", "pending")),  # type: ignore[attr-defined]
        Conversation.first_response_at.is_(None),  # type: ignore[union-attr]
        or_(*late),  # type: ignore[arg-type]
    )


async def late_count(session: AsyncSession, now: datetime, targets: Mapping[str, float]) -> int:
    """Open conversations with no first answer, older than their priority's target
    (``targets``: minutes by priority, each > 0, at least one)."""
    found = await session.execute(select(func.count()).where(_late(now, targets)))
    return int(found.scalar_one())


async def late_conversations(
    session: AsyncSession,
    now: datetime,
    targets: Mapping[str, float],
    limit: int,
    assignee: Lookup | None = None,
) -> list[tuple[Conversation, Any]]:
    """The conversations ``late_count`` counts, oldest first, each with ``assignee`` of
    its assignee (None without a lookup or an assignee)."""
    rows = await session.execute(
        select(Conversation, _looked_up(assignee, Conversation.assignee_id))  # type: ignore[call-overload]
        .where(_late(now, targets))
        .order_by(Conversation.created_at)
        .limit(limit)
    )
    return [(c, value) for c, value in rows.all()]


async def open_conversations_of(
    session: AsyncSession, customer_ids: Iterable[int], assignee: Lookup | None = None
) -> dict[int, list[tuple[Conversation, Any]]]:
    """Each customer's unresolved conversations, the latest message first, with
    ``assignee`` of their assignee (as ``late_conversations``)."""
    found: dict[int, list[tuple[Conversation, Any]]] = defaultdict(list)
    ids = set(customer_ids)
    if ids:
        rows = await session.execute(
            select(Conversation, _looked_up(assignee, Conversation.assignee_id))  # type: ignore[call-overload]
            .where(Conversation.customer_id.in_(ids), Conversation.status != "resolved")  # type: ignore[attr-defined]
            .order_by(Conversation.last_message_at.desc())  # type: ignore[attr-defined]
        )
        for c, value in rows.all():
            found[c.customer_id].append((c, value))
    return found


async def last_contacts(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, datetime]:
    """Each customer's latest message, either way (absent: none)."""
    ids = set(customer_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Message.customer_id, func.max(Message.created_at))  # type: ignore[call-overload]
        .where(Message.customer_id.in_(ids))  # type: ignore[attr-defined]
        .group_by(Message.customer_id)
    )
    return {cid: at for cid, at in rows.all() if at is not None}


async def inbound_counts(session: AsyncSession, since: datetime, until: datetime) -> dict[Key, int]:
    """Customer messages received in ``[since, until)`` by their conversation's
    (channel, assignee)."""
    c = Conversation
    rows = await session.execute(
        select(c.channel, c.assignee_id, func.count())  # type: ignore[call-overload]
        .select_from(Message)
        .join(c, c.id == Message.conversation_id)  # type: ignore[arg-type]
        .where(
            Message.direction == "in",
            Message.created_at >= since,  # type: ignore[operator]
            Message.created_at < until,  # type: ignore[operator]
        )
        .group_by(c.channel, c.assignee_id)
    )
    return {(ch, a): int(n) for ch, a, n in rows.all()}


Instant = Literal["created_at", "resolved_at"]


async def conversation_counts(
    session: AsyncSession, instant: Instant, since: datetime, until: datetime
) -> dict[Key, int]:
    """Conversations opened (``created_at``) or resolved (``resolved_at``) in
    ``[since, until)``, by (channel, assignee)."""
    c = Conversation
    at = getattr(c, instant)
    rows = await session.execute(
        select(c.channel, c.assignee_id, func.count())  # type: ignore[call-overload]
        .where(at >= since, at < until)
        .group_by(c.channel, c.assignee_id)
    )
    return {(ch, a): int(n) for ch, a, n in rows.all()}


async def spans(
    session: AsyncSession,
    end: Literal["first_response_at", "resolved_at"],
    window: Instant,
    since: datetime,
    until: datetime,
    sample: int,
) -> list[Span]:
    """``(channel, assignee_id, created_at, end)`` of the conversations whose ``window``
    instant is in ``[since, until)`` and that have an ``end``: the most recent ``sample``
    ends (a bounded read for medians)."""
    c = Conversation
    start_at, end_at, window_at = c.created_at, getattr(c, end), getattr(c, window)
    rows = await session.execute(
        select(c.channel, c.assignee_id, start_at, end_at)  # type: ignore[call-overload]
        .where(
            start_at.is_not(None),  # type: ignore[union-attr]
            end_at.is_not(None),
            window_at >= since,
            window_at < until,
        )
        .order_by(end_at.desc())
        .limit(sample)
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def last_messages(
    session: AsyncSession, conversation_ids: list[int], limit: int
) -> dict[int, list[Message]]:
    """Each conversation's last ``limit`` messages, oldest first."""
    ranked = (
        select(
            Message.id,
            func.row_number()
            .over(partition_by=Message.conversation_id, order_by=Message.id.desc())  # type: ignore[union-attr]
            .label("n"),
        )
        .where(Message.conversation_id.in_(conversation_ids))  # type: ignore[attr-defined]
        .subquery()
    )
    rows = await session.execute(
        select(Message)
        .join(ranked, ranked.c.id == Message.id)
        .where(ranked.c.n <= limit)
        .order_by(Message.id)  # type: ignore[arg-type]
    )
    found: dict[int, list[Message]] = {}
    for m in rows.scalars().all():
        found.setdefault(m.conversation_id, []).append(m)
    return found


async def notes_of(session: AsyncSession, conversation_ids: list[int]) -> dict[int, list[Note]]:
    """Each conversation's notes, oldest first."""
    rows = await session.execute(
        select(Note).where(Note.conversation_id.in_(conversation_ids)).order_by(Note.id)  # type: ignore[attr-defined, arg-type]
    )
    found: dict[int, list[Note]] = {}
    for n in rows.scalars().all():
        found.setdefault(n.conversation_id, []).append(n)
    return found


async def conversation(session: AsyncSession, conversation_id: int | None) -> Conversation | None:
    """The conversation with this id (None: no id, or no such conversation)."""
    return await session.get(Conversation, conversation_id) if conversation_id else None


async def message(session: AsyncSession, message_id: int | None) -> Message | None:
    """The message with this id (None: no id, or no such message)."""
    return await session.get(Message, message_id) if message_id else None


async def _by_id(session: AsyncSession, model: Any, ids: Iterable[int]) -> dict[int, Any]:
    """``{id: the row}`` of ``model``'s rows with those ids that exist, in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(select(model).where(model.id.in_(wanted)))
    return {row.id: row for row in rows.scalars().all()}


async def messages_by_id(session: AsyncSession, message_ids: Iterable[int]) -> dict[int, Message]:
    """``{message id: the message}`` of those that exist, in one query."""
    return await _by_id(session, Message, message_ids)


async def conversations_by_id(
    session: AsyncSession, conversation_ids: Iterable[int]
) -> dict[int, Conversation]:
    """``{conversation id: the conversation}`` of those that exist, in one query."""
    return await _by_id(session, Conversation, conversation_ids)


async def messages_after(
    session: AsyncSession, conversation_id: int, after_id: int, limit: int
) -> list[Message]:
    """The conversation's first ``limit`` messages after the message ``after_id``, oldest
    first (a mirror catching up)."""
    rows = await session.execute(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,  # type: ignore[arg-type]
            Message.id > after_id,  # type: ignore[arg-type, operator]
        )
        .order_by(Message.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    return list(rows.scalars().all())


async def _column_of(
    session: AsyncSession, column: Any, conversation_ids: Iterable[int]
) -> dict[int, Any]:
    """``{conversation id: its value of column}`` of those that exist, in one query."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Conversation.id, column).where(Conversation.id.in_(ids))  # type: ignore[union-attr, call-overload]
    )
    return dict(rows.all())  # type: ignore[arg-type]


async def customer_ids(session: AsyncSession, conversation_ids: Iterable[int]) -> dict[int, int]:
    """``{conversation id: its customer's id}`` in one query."""
    return await _column_of(session, Conversation.customer_id, conversation_ids)


async def assignees(
    session: AsyncSession, conversation_ids: Iterable[int]
) -> dict[int, int | None]:
    """``{conversation id: its assignee's id (None: nobody)}`` of those that exist."""
    return await _column_of(session, Conversation.assignee_id, conversation_ids)


async def messages_after_many(
    session: AsyncSession, after: Mapping[int, int], limit: int
) -> dict[int, list[Message]]:
    """``messages_after`` for many conversations in one query: ``after`` maps each
    conversation to the message id its mirror has reached."""
    if not after:
        return {}
    rows = await session.execute(
        select(Message)
        .where(
            Message.conversation_id.in_(list(after)),  # type: ignore[attr-defined]
            Message.id > min(after.values()),  # type: ignore[arg-type, operator]
        )
        .order_by(Message.id)  # type: ignore[arg-type]
    )
    found: dict[int, list[Message]] = {c: [] for c in after}
    for message in rows.scalars().all():
        kept = found[message.conversation_id]
        if message.id > after[message.conversation_id] and len(kept) < limit:  # type: ignore[operator]
            kept.append(message)
    return found


Beside = Callable[[Select[Any], Any, Any], Select[Any]]  # (select, id column, customer_id column)


def lock_statement(beside: Beside, for_update: bool, many: bool = False) -> Select[Any]:
    """``inbox.assignment.lock_conversation``'s read for a caller that reads more in the
    same statement (routing's decision): ``beside`` gets ``select(Conversation)`` with the
    conversation's ``id`` and ``customer_id`` columns and adds its owners' columns and
    joins over them. The bind parameter ``conversation_id`` picks the conversation (with
    ``many``: the expanding ``conversation_ids`` picks several, in id order, so two
    overlapping batches lock in the same order); with ``for_update`` their rows (only
    theirs) are locked. Rows are re-read (populate_existing)."""
    stmt = beside(select(Conversation), Conversation.id, Conversation.customer_id)
    if many:
        stmt = stmt.where(
            Conversation.id.in_(bindparam("conversation_ids", expanding=True))  # type: ignore[union-attr]
        ).order_by(Conversation.id)  # type: ignore[arg-type]
    else:
        stmt = stmt.where(Conversation.id == bindparam("conversation_id"))
    if for_update:
        stmt = stmt.with_for_update(of=Conversation)  # type: ignore[arg-type]
    return stmt.execution_options(populate_existing=True)


async def last_inbound_at(session: AsyncSession, conversation_id: int) -> datetime | None:
    """When the customer last wrote in this conversation: the provider's time of their
    latest message, else when we stored it (None: they never wrote)."""
    found = await session.execute(
        select(Message.sent_at, Message.created_at)  # type: ignore[call-overload]
        .where(Message.conversation_id == conversation_id, Message.direction == "in")
        .order_by(Message.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    row = found.first()
    return None if row is None else row[0] or row[1]
