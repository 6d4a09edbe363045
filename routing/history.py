"""Changes of a conversation's owner, written one way for one conversation or thousands.

Every change of owner (by the policy, a person, a handoff, back to the queue) goes
through ``record_many``, in the caller's transaction: the conversations' ``assignee_id``,
one multi-row INSERT of ``Assignment`` history rows (who, when, why, by whom), one DELETE
of the queue waits the new owners end, one UPDATE of the members' ``last_assigned_at``,
and one INSERT of the ``conversation.assigned`` jobs. ``record`` is a batch of one.

The history is also what "the customer's previous agent" reads (``previous_agents``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jobs, live
from heliograph.db import utcnow
from heliograph.texts import dump
from inbox.assignment import set_assignee
from inbox.models import Conversation
from routing.bus import CONVERSATION_ASSIGNED, ConversationAssigned
from routing.models import Assignment, RoutingWait, TeamMember


@dataclass(frozen=True)
class OwnerChange:
    """One conversation's new owner (None: back to the queue) and why.

    ``waiting`` False: the caller knows the conversation has no queue wait to end."""

    conversation: Conversation
    member_id: int | None
    reason: str
    by_member_id: int | None = None  # a person who made the change
    waiting: bool = True


async def record_many(
    session: AsyncSession,
    changes: Sequence[OwnerChange],
    kind: str,
    *,
    now: datetime | None = None,
    stamp: bool = True,
) -> list[int]:
    """Write ``changes`` (conversations locked by the caller, who commits); the ids of
    their history rows, in order. ``stamp`` False: the caller has set the new owners'
    ``last_assigned_at`` (the decision's confirm did)."""
    return [row["id"] for row in await _write(session, changes, kind, now, stamp)]


async def _write(
    session: AsyncSession,
    changes: Sequence[OwnerChange],
    kind: str,
    now: datetime | None,
    stamp: bool,
) -> list[dict[str, Any]]:
    """``record_many``; the history rows written, as dicts with their ids."""
    if not changes:
        return []
    now = now or utcnow()
    rows: list[dict[str, Any]] = []
    for change in changes:
        conversation = change.conversation
        previous = set_assignee(conversation, change.member_id, now)
        rows.append(
            {
                "conversation_id": conversation.id,
                "customer_id": conversation.customer_id,
                "member_id": change.member_id,
                "previous_member_id": previous,
                "kind": kind,
                "by_member_id": change.by_member_id,
                "reason": str(change.reason),  # the English, as the API shows it
                "reason_text": dump(change.reason),  # the same, for the web app to translate
                "at": now,
            }
        )
    # Core INSERT ... RETURNING (one row: a plain INSERT, the decision path's cheapest way
    # to a history row; more: one multi-row INSERT, the ids in the rows' order).
    inserted = await session.execute(
        insert(Assignment).returning(Assignment.id, sort_by_parameter_order=True), rows
    )
    for row, assignment_id in zip(rows, inserted.scalars(), strict=True):
        row["id"] = assignment_id
    ended = [c.conversation.id for c in changes if c.member_id is not None and c.waiting]
    if ended:
        await session.execute(
            delete(RoutingWait).where(RoutingWait.conversation_id.in_(ended))  # type: ignore[attr-defined]
        )
    for conversation_id in dict.fromkeys(c.conversation.id for c in changes):
        data = {"conversation_id": conversation_id}  # the open pages refresh once committed
        live.after_commit(session, "inbox", data)
        live.after_commit(session, f"conversation-{conversation_id}", data)
    members = list(dict.fromkeys(c.member_id for c in changes if c.member_id is not None))
    if stamp and members:
        await session.execute(
            update(TeamMember).where(TeamMember.id.in_(members)).values(last_assigned_at=now)  # type: ignore[union-attr]
        )
    await jobs.publish_many(
        session,
        CONVERSATION_ASSIGNED,
        [
            ConversationAssigned(
                conversation_id=row["conversation_id"],
                assignment_id=row["id"],
                member_id=row["member_id"],
                previous_member_id=row["previous_member_id"],
                kind=kind,
                reason=row["reason"],
            )
            for row in rows
        ],
    )
    return rows


async def record(
    session: AsyncSession,
    conversation: Conversation,
    member_id: int | None,
    kind: str,
    reason: str,
    *,
    now: datetime | None = None,
    by_member_id: int | None = None,
    stamp_member: bool = True,
    waiting: bool = True,
) -> Assignment:
    """``record_many`` for one conversation: change its owner (None: back to the queue),
    write the history row, publish ``conversation.assigned``."""
    change = OwnerChange(conversation, member_id, reason, by_member_id, waiting)
    (row,) = await _write(session, [change], kind, now, stamp_member)
    return Assignment(**row)


async def history(session: AsyncSession, conversation_id: int) -> list[Assignment]:
    """Who held the conversation, when and why, oldest first."""
    rows = await session.execute(
        select(Assignment)
        .where(Assignment.conversation_id == conversation_id)
        .order_by(Assignment.id)  # type: ignore[arg-type]
    )
    return list(rows.scalars().all())


async def previous_agents(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, int]:
    """Each customer's most recent agent on any conversation (the relationship), in one
    query; a customer nobody has served yet is not in it. ``routing.assignment``'s
    one-statement lock reads the same for one conversation's customer."""
    ids = list(set(customer_ids))
    if not ids:
        return {}
    latest = (
        select(func.max(Assignment.id))
        .where(Assignment.customer_id.in_(ids), Assignment.member_id.is_not(None))  # type: ignore[attr-defined, union-attr]
        .group_by(Assignment.customer_id)
    )
    rows = await session.execute(
        select(Assignment.customer_id, Assignment.member_id).where(Assignment.id.in_(latest))  # type: ignore[union-attr]
    )
    return {customer_id: member_id for customer_id, member_id in rows.all()}
