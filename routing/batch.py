"""Assigning many conversations in one transaction: the queue drain, and handoff's shift
change (thousands of conversations at a shift boundary).

Per batch, not per conversation: one forced team-version check, one read (PostgreSQL:
``FOR UPDATE``, in id order) of the members on duty, one exact GROUP BY of their loads,
one read of the customers' previous agents; then the policy runs in memory, each choice
updating the loads it counts on; then the changes are written together
(``routing.history.record_many``: one multi-row INSERT of history, one DELETE of queue
waits, one UPDATE of ``last_assigned_at``, one INSERT of ``conversation.assigned`` jobs,
and the conversations' own UPDATEs).
With the members locked (PostgreSQL) or the write lock held (SQLite), the counts stay
exact for the whole batch, so capacity holds without a per-conversation confirm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import get_customer
from heliograph.db import utcnow
from inbox.assignment import open_loads
from inbox.models import Conversation
from routing.assignment import Routed
from routing.history import OwnerChange, previous_agents, record_many
from routing.models import TeamMember
from routing.policy import PolicyConfig, Wanted, why_nobody
from routing.snapshot import TeamSnapshot, recheck, team_snapshot


async def _hold_duty(
    session: AsyncSession, snapshot: TeamSnapshot, now: datetime, config: PolicyConfig
) -> frozenset[int]:
    """Lock the members on duty, make their loads exact; returns members whose row
    changed since the snapshot (left out of this batch). ``FOR NO KEY UPDATE`` as in
    ``routing.assignment._confirm_fresh``: a reply or note by one of them (its foreign-key
    check) is not blocked by it, so it cannot deadlock with the batch."""
    duty = {m.id: m for m in snapshot.on_duty(now)}
    if not duty:
        return frozenset()
    stmt = (
        select(TeamMember.id, TeamMember.updated_at, TeamMember.last_active_at)
        .where(TeamMember.id.in_(list(duty)))  # type: ignore[union-attr]
        .order_by(TeamMember.id)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(key_share=True)
    changed = set(duty)
    for member_id, updated_at, last_active_at in (await session.execute(stmt)).all():
        if updated_at == duty[member_id].updated_at:
            changed.discard(member_id)
            duty[member_id].last_active_at = last_active_at
    loads = await open_loads(session, config.per_channel, member_ids=list(duty))
    for key in [k for k in snapshot.loads if k[0] in duty]:
        del snapshot.loads[key]
    snapshot.loads.update(loads)
    return frozenset(changed)


async def _language(session: AsyncSession, conversation: Conversation) -> str | None:
    if conversation.language is not None:
        return conversation.language
    return (await get_customer(session, conversation.customer_id)).language


async def assign_batch(
    session: AsyncSession,
    conversations: list[Conversation],
    *,
    now: datetime | None = None,
    kind: str = "policy",
    exclude: Mapping[int, Iterable[int]] | None = None,
    reason_prefix: Mapping[int, str] | None = None,
    config: PolicyConfig | None = None,
) -> list[Routed]:
    """Give each of ``conversations`` (locked by the caller, e.g. with
    ``inbox.assignment.lock_conversations``) to the best eligible member, in order.

    ``exclude[conversation_id]``: members not to choose for it (e.g. the agent whose
    shift ends); ``reason_prefix[conversation_id]``: words before the policy's reason
    (e.g. "handoff from Aiko (shift ended): "). Results are in input order; a
    ``member_id`` of None means nobody was eligible (``reason`` says why) and nothing
    changed for that conversation. The caller commits.
    """
    if not conversations:
        return []
    now = now or utcnow()
    config = config or PolicyConfig.from_settings()
    exclude = exclude or {}
    reason_prefix = reason_prefix or {}
    recheck()
    snapshot = await team_snapshot(session, config)
    changed = await _hold_duty(session, snapshot, now, config)
    previous = await previous_agents(session, (c.customer_id for c in conversations))
    results: list[Routed] = []
    changes: list[OwnerChange] = []
    for conversation in conversations:
        wanted = Wanted.build(
            conversation.channel,
            await _language(session, conversation),
            conversation.topic_tags,
            previous.get(conversation.customer_id),
            conversation.assignee_id,
            changed.union(exclude.get(conversation.id, ())),  # type: ignore[arg-type]
        )
        choice = snapshot.choose(wanted, now, config)
        if choice is None:
            why = why_nobody(snapshot.on_duty(now), wanted, now, snapshot.load, config)
            results.append(Routed(conversation.id, None, why, None, conversation.assignee_id))  # type: ignore[arg-type]
            continue
        member_id = choice.member.id
        reason = reason_prefix.get(conversation.id, "") + choice.reason(
            wanted, now, config.per_channel
        )
        if member_id == conversation.assignee_id:
            results.append(Routed(conversation.id, member_id, reason, None, member_id))  # type: ignore[arg-type]
            continue
        before = conversation.assignee_id
        snapshot.moved(member_id, before, conversation.channel)
        choice.member.last_assigned_at = now
        changes.append(OwnerChange(conversation, member_id, reason))
        results.append(Routed(conversation.id, member_id, reason, None, before))  # type: ignore[arg-type]
    written = await record_many(session, changes, kind, now=now)
    ids = {change.conversation.id: i for change, i in zip(changes, written, strict=True)}
    return [
        replace(r, assignment_id=ids[r.conversation_id]) if r.conversation_id in ids else r
        for r in results
    ]
