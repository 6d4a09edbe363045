"""Giving one conversation to someone: by the policy (``assign_best``, as a message
arrives) or by a person (``assign_to``); the members' availability.

The decision reads the conversation under its lock with everything it needs in one
statement (``lock_for_routing``), lets the policy choose from the team snapshot, and
confirms the choice on the member's own row (``confirm``: on PostgreSQL that row's lock,
so only assignments to the same member queue behind each other). Many conversations at
once (the queue drain, a shift change) go through ``routing.batch.assign_batch``, which
locks the members on duty once for the batch instead. Either way the change of owner is
written by ``routing.history.record_many``: its history row, the queue wait it ends, the
member's stamp and ``conversation.assigned``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytz
from sqlalchemy import Select, exists, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import get_customer
from crm_core.models import Customer
from crm_core.reads import with_customer
from heliograph.db import utcnow
from heliograph.texts import Text
from inbox.assignment import lock_conversation, open_load, open_load_query
from inbox.conversations import ConversationNotFound, InvalidRequest
from inbox.models import Conversation
from inbox.reads import lock_statement
from routing.history import previous_agents, record
from routing.models import Assignment, RoutingWait, TeamMember
from routing.policy import (
    Choice,
    MemberView,
    PolicyConfig,
    Wanted,
    answers_customers,
    city_of,
    effective_availability,
    why_nobody,
)
from routing.schedule import is_on_shift
from routing.snapshot import TeamSnapshot, recheck, team_snapshot
from routing.team import get_member

# A member's role and availability inside a sentence (the web app translates them).
ROLE_WORDS: dict[str, str] = {
    "agent": Text("agent"),
    "lead": Text("lead"),
    "admin": Text("admin"),
    "exec": Text("exec"),
}
AVAILABILITY_WORDS: dict[str, str] = {
    "online": Text("online"),
    "away": Text("away"),
    "offline": Text("offline"),
}

_CONFIRM_TRIES = 5


class AssignmentRefused(InvalidRequest):
    """This assignment is not allowed; the message says why and what to do instead."""


@dataclass(frozen=True)
class Routed:
    """The outcome of a policy decision for one conversation."""

    conversation_id: int
    member_id: int | None  # None: nobody eligible (queued)
    reason: str
    assignment_id: int | None = None  # None when nothing changed
    previous_member_id: int | None = None


@dataclass(frozen=True)
class CustomerView:
    """What routing reads of a customer (plain columns, not the ORM profile)."""

    id: int
    vip: bool
    language: str | None
    timezone: str | None

    @classmethod
    def of(cls, customer: Customer) -> CustomerView:
        return cls(customer.id, customer.vip, customer.language, customer.timezone)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Locked:
    """A conversation locked for routing, with what the decision reads beside it."""

    conversation: Conversation
    customer: CustomerView | None  # None: merged away or gone (``customer_of`` follows)
    previous_member_id: int | None  # the customer's most recent agent
    waiting: bool  # it has a RoutingWait row (in the queue)


def _beside(stmt: Select[Any], conversation_id: Any, customer_id: Any) -> Select[Any]:
    """What the decision reads beside the conversation: its customer (crm_core's join),
    the customer's most recent agent (``routing.history.previous_agents``, for one) and
    whether it waits in the queue."""
    previous = (
        select(Assignment.member_id)
        .where(
            Assignment.customer_id == customer_id,
            Assignment.member_id.is_not(None),  # type: ignore[union-attr]
        )
        .order_by(Assignment.id.desc())  # type: ignore[union-attr]
        .limit(1)
        .scalar_subquery()
    )
    waiting = exists().where(RoutingWait.conversation_id == conversation_id)
    return with_customer(stmt, customer_id).add_columns(previous, waiting)


@cache
def _lock_statement(for_update: bool) -> Any:
    """Built once (the decision path should not pay for building it each time)."""
    return lock_statement(_beside, for_update)


async def lock_for_routing(session: AsyncSession, conversation_id: int) -> Locked:
    """``inbox.assignment.lock_conversation`` (re-read, FOR UPDATE on PostgreSQL) with
    its customer, the customer's previous agent and whether it waits in the queue, in
    one statement: the decision's one read."""
    stmt = _lock_statement(not _is_sqlite(session))
    row = (await session.execute(stmt, {"conversation_id": conversation_id})).one_or_none()
    if row is None:
        raise ConversationNotFound(f"conversation {conversation_id} does not exist")
    conversation, customer_id, vip, language, timezone, merged, previous, waiting = row
    live = customer_id is not None and merged is None
    customer = CustomerView(customer_id, vip, language, timezone) if live else None
    return Locked(conversation, customer, previous, bool(waiting))


@cache
def _lock_many_statement(for_update: bool) -> Any:
    return lock_statement(_beside, for_update, many=True)


async def lock_many_for_routing(
    session: AsyncSession, conversation_ids: Iterable[int]
) -> dict[int, Locked]:
    """``lock_for_routing`` for many conversations in one statement, locked in id order
    (two batches that overlap wait for each other instead of deadlocking). Missing ids
    are left out."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return {}
    stmt = _lock_many_statement(not _is_sqlite(session))
    found: dict[int, Locked] = {}
    for row in (await session.execute(stmt, {"conversation_ids": ids})).all():
        conversation, customer_id, vip, language, timezone, merged, previous, waiting = row
        live = customer_id is not None and merged is None
        customer = CustomerView(customer_id, vip, language, timezone) if live else None
        found[conversation.id] = Locked(conversation, customer, previous, bool(waiting))
    return found


async def customer_of(session: AsyncSession, locked: Locked) -> CustomerView:
    """The conversation's live customer (``get_customer``: merges followed)."""
    if locked.customer is not None:
        return locked.customer
    return CustomerView.of(await get_customer(session, locked.conversation.customer_id))


async def _stamp(session: AsyncSession, member_id: int, now: datetime) -> None:
    await session.execute(
        update(TeamMember).where(TeamMember.id == member_id).values(last_assigned_at=now)  # type: ignore[arg-type]
    )


def _is_sqlite(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "sqlite"


async def confirm(
    session: AsyncSession,
    member: MemberView,
    conversation: Conversation,
    now: datetime,
    config: PolicyConfig,
) -> int | None:
    """May ``member`` take ``conversation`` now? Checked on the database, not the
    snapshot: active, online, on shift, and an exact open count under capacity. On yes,
    returns that count (without this conversation) and has stamped ``last_assigned_at``.
    """
    if not answers_customers(member):
        return None
    own = int(conversation.assignee_id == member.id and conversation.status != "resolved")
    channel = conversation.channel if config.per_channel else None
    if _is_sqlite(session) and member.updated_at is not None:
        load = await _confirm_unchanged(session, member, own, channel, now, config)
        if load is not None:
            return load
    return await _confirm_fresh(session, member.id, own, channel, now, config)


async def _confirm_unchanged(
    session: AsyncSession,
    member: MemberView,
    own: int,
    channel: str | None,
    now: datetime,
    config: PolicyConfig,
) -> int | None:
    """SQLite, one statement: stamp the member if their row is the snapshot's (so the
    schedule and availability the policy used are current) and the exact count is under
    capacity. SQLite runs one writer at a time, so nothing can slip in between."""
    if not member.on_shift(now):
        return None
    load = open_load_query(member.id, channel).scalar_subquery()
    conditions = [
        TeamMember.id == member.id,
        TeamMember.updated_at == member.updated_at,
        TeamMember.active.is_(True),  # type: ignore[attr-defined]
        TeamMember.availability == "online",
        load - own < TeamMember.capacity,
    ]
    if config.idle_away_minutes:
        cutoff = now - timedelta(minutes=config.idle_away_minutes)
        conditions.append(
            or_(TeamMember.last_active_at.is_(None), TeamMember.last_active_at >= cutoff)  # type: ignore[union-attr, operator]
        )
    stmt = update(TeamMember).where(*conditions).values(last_assigned_at=now).returning(load)
    found = (await session.execute(stmt)).scalar()
    return None if found is None else int(found) - own


async def _confirm_fresh(
    session: AsyncSession,
    member_id: int,
    own: int,
    channel: str | None,
    now: datetime,
    config: PolicyConfig,
) -> int | None:
    """Lock the member's row (PostgreSQL: assignments to one member queue here, so two
    workers cannot both take the last free place), re-read it, count exactly, stamp.

    ``FOR NO KEY UPDATE``, the lock PostgreSQL's own UPDATE of a non-key column takes: it
    queues assignments all the same, but lets a row that points at the member be written
    meanwhile (its foreign-key check holds ``KEY SHARE`` on the member). ``FOR UPDATE``
    conflicted with that check: an agent's reply, holding the check's lock and waiting for
    the conversation that routing held, deadlocked with routing waiting for the member."""
    stmt = select(TeamMember).where(TeamMember.id == member_id)  # type: ignore[arg-type]
    if not _is_sqlite(session):
        stmt = stmt.with_for_update(key_share=True)
    fresh = (
        await session.execute(stmt.execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if fresh is None or not fresh.active or not answers_customers(fresh):
        return None
    if not is_on_shift(fresh, now):
        return None
    if effective_availability(fresh, now, config.idle_away_minutes) != "online":
        return None
    load = await open_load(session, member_id, channel) - own
    if load >= fresh.capacity:
        return None
    await _stamp(session, member_id, now)
    return load


async def wanted_for(
    session: AsyncSession,
    conversation: Conversation,
    exclude: frozenset[int] = frozenset(),
    *,
    locked: Locked | None = None,
) -> Wanted:
    """What the conversation asks of its agent. ``locked``: what ``lock_for_routing``
    read with it (the previous agent, the customer), so nothing is read again."""
    known = locked if locked is not None and locked.conversation is conversation else None
    language = conversation.language  # ingest copies the customer's; else ask the profile
    if language is None:
        customer = await (
            customer_of(session, known)
            if known is not None
            else get_customer(session, conversation.customer_id)
        )
        language = customer.language
    if known is not None:
        previous = known.previous_member_id
    else:
        customer_id = conversation.customer_id
        previous = (await previous_agents(session, [customer_id])).get(customer_id)
    return Wanted.build(
        conversation.channel,
        language,
        conversation.topic_tags,
        previous_member_id=previous,
        current_assignee_id=conversation.assignee_id,
        exclude=exclude,
    )


async def decide(
    session: AsyncSession,
    conversation: Conversation,
    now: datetime,
    config: PolicyConfig,
    snapshot: TeamSnapshot,
    exclude: frozenset[int] = frozenset(),
    locked: Locked | None = None,
) -> tuple[Choice | None, Wanted]:
    """The policy's choice, confirmed on the member's locked row; nothing is written."""
    wanted = await wanted_for(session, conversation, exclude, locked=locked)
    channel = conversation.channel if config.per_channel else ""
    for _ in range(_CONFIRM_TRIES):
        choice = snapshot.choose(wanted, now, config)
        if choice is None:
            return None, wanted
        load = await confirm(session, choice.member, conversation, now, config)
        if load is not None:
            snapshot.set_load(choice.member.id, channel, load)
            return replace(choice, load=load), wanted
        # The snapshot was stale for this member: learn and try the next best.
        actual = await open_load(session, choice.member.id, channel or None)
        snapshot.set_load(choice.member.id, channel, actual)
        wanted = replace(wanted, exclude=wanted.exclude | {choice.member.id})
    return None, wanted


async def assign_best(
    session: AsyncSession,
    conversation: Conversation,
    *,
    now: datetime | None = None,
    kind: str = "policy",
    exclude: frozenset[int] = frozenset(),
    reason_prefix: str = "",
    config: PolicyConfig | None = None,
    snapshot: TeamSnapshot | None = None,
    locked: Locked | None = None,
) -> Routed:
    """Give ``conversation`` (locked by the caller) to the best eligible member.

    ``member_id`` None in the result: nobody is eligible, ``reason`` says why, nothing
    was written. Choosing its current assignee changes nothing (no history row).
    ``locked``: what ``lock_for_routing`` read with the conversation.
    """
    now = now or utcnow()
    config = config or PolicyConfig.from_settings()
    snapshot = snapshot or await team_snapshot(session, config)
    if locked is not None and locked.conversation is not conversation:
        locked = None
    choice, wanted = await decide(session, conversation, now, config, snapshot, exclude, locked)
    if choice is None:
        why = why_nobody(snapshot.on_duty(now), wanted, now, snapshot.load, config)
        return Routed(conversation.id, None, why, previous_member_id=conversation.assignee_id)  # type: ignore[arg-type]
    member_id = choice.member.id
    reason = reason_prefix + choice.reason(wanted, now, config.per_channel)
    if member_id == conversation.assignee_id:
        return Routed(conversation.id, member_id, reason, None, member_id)  # type: ignore[arg-type]
    previous = conversation.assignee_id
    row = await record(
        session,
        conversation,
        member_id,
        kind,
        reason,
        now=now,
        stamp_member=False,
        waiting=locked is None or locked.waiting,
    )
    snapshot.moved(member_id, previous, conversation.channel)
    choice.member.last_assigned_at = now
    return Routed(conversation.id, member_id, reason, row.id, previous)  # type: ignore[arg-type]


def _who(member: TeamMember, now: datetime, load: int, notes: list[Text]) -> Text:
    zone = member.timezone or "UTC"
    local = now.astimezone(pytz.timezone(zone))
    where = f"{city_of(zone)} {local:%H:%M}"
    load_text = Text("%(load)s/%(capacity)s open", load=load, capacity=member.capacity)
    if notes:
        return Text(
            "%(name)s — %(where)s, %(load)s (%(notes)s)",
            name=member.name,
            where=where,
            load=load_text,
            notes=notes,
        )
    return Text("%(name)s — %(where)s, %(load)s", name=member.name, where=where, load=load_text)


def refuse_non_answering(member: TeamMember) -> None:
    """Nobody, not even a lead by hand, gives a conversation to a member who does not
    answer customers (as Zendesk refuses to assign a ticket to a light agent)."""
    if not answers_customers(member):
        raise AssignmentRefused(
            Text(
                "%(name)s (%(role)s) does not answer customers; give the conversation to an "
                "agent, or set answers_customers: true for them in the team file",
                name=member.name,
                role=ROLE_WORDS.get(member.role, member.role),
            )
        )


async def assign_to(
    session: AsyncSession,
    conversation_id: int,
    member_id: int,
    actor: TeamMember,
    *,
    now: datetime | None = None,
) -> Assignment | None:
    """A person assigns: leads and admins may give a conversation to anyone who answers
    customers (the reason notes when that member is off shift, away or full); agents may
    claim an unassigned conversation for themselves while under capacity. None: already
    theirs."""
    now = now or utcnow()
    conversation = await lock_conversation(session, conversation_id)
    member = await get_member(session, member_id)
    if conversation.status == "resolved":
        raise AssignmentRefused(
            Text("conversation %(id)s is resolved; reopen it first", id=conversation_id)
        )
    if not member.active:
        raise AssignmentRefused(Text("%(name)s is no longer active on the team", name=member.name))
    refuse_non_answering(member)
    if conversation.assignee_id == member_id:
        return None
    load = await open_load(session, member_id)
    is_lead = actor.role in ("lead", "admin")
    if not is_lead:
        if actor.id != member_id:
            raise AssignmentRefused(
                Text("agents may only claim conversations for themselves; ask a lead")
            )
        if conversation.assignee_id is not None:
            raise AssignmentRefused(
                Text(
                    "conversation %(id)s is assigned to someone else; ask a lead to move it",
                    id=conversation_id,
                )
            )
        if load >= member.capacity:
            raise AssignmentRefused(
                Text(
                    "you have %(load)s/%(capacity)s open conversations; resolve one first",
                    load=load,
                    capacity=member.capacity,
                )
            )
    notes = []
    if not is_on_shift(member, now):
        notes.append(Text("off shift"))
    if member.availability != "online":
        notes.append(AVAILABILITY_WORDS.get(member.availability, member.availability))
    if load >= member.capacity:
        notes.append(Text("over capacity"))
    who = _who(member, now, load, notes)
    if actor.id == member_id:
        kind, reason = "claim", Text("claimed by %(who)s", who=who)
    else:
        kind, reason = "manual", Text("assigned by %(actor)s to %(who)s", actor=actor.name, who=who)
    row = await record(
        session, conversation, member_id, kind, reason, now=now, by_member_id=actor.id
    )
    await touch(session, member_id if actor.id is None else actor.id, now)
    return row


async def set_availability(
    session: AsyncSession,
    member_id: int,
    availability: str,
    *,
    auto: bool = False,
    now: datetime | None = None,
) -> TeamMember:
    """Online, away or offline, by the member (``auto`` False) or by the inactivity rule."""
    from routing.models import AVAILABILITY

    if availability not in AVAILABILITY:
        raise InvalidRequest(
            Text("availability must be one of %(choices)s", choices=list(AVAILABILITY))
        )
    now = now or utcnow()
    member = await get_member(session, member_id)
    member.availability, member.availability_auto = availability, auto
    member.updated_at = now  # the team snapshot's version
    if not auto:
        member.last_active_at = now
    await session.flush()
    recheck()
    return member


async def touch(session: AsyncSession, member_id: int, now: datetime | None = None) -> None:
    """A sign of life from the member (surfaces call this): ends an automatic away."""
    now = now or utcnow()
    member = await get_member(session, member_id)
    member.last_active_at = now
    if member.availability_auto:
        member.availability, member.availability_auto = "online", False
        member.updated_at = now
        recheck()
    await session.flush()
