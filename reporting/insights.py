"""The read queries behind the lead commands (Slack ``/hg``) and the CEO bot (Telegram).

Every function takes an ``AsyncSession`` and an instant (``now``, default: the current
time) and returns plain dataclasses; formatting belongs to the surface. "Today" is the
asker's local day: the functions that need one take the asker's IANA zone.

Medians are computed in one place, ``_medians``: Python over a bounded read of the
(start, end) pairs, since SQLite has no ``percentile_cont`` and the interval arithmetic
differs between the two engines. ``MEDIAN_SAMPLE`` bounds the read (the most recent rows
of the window win); a day or a week of one team's conversations is far below it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, literal, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import contacts_of, search_customers
from crm_core.journey import journey_of
from crm_core.models import Customer, Intervention
from crm_core.profile import zone
from handoff.service import list_handoffs
from heliograph.db import utcnow
from heliograph.settings import get_settings
from inbox.assignment import queue_size
from inbox.models import Conversation, Message
from routing.models import TeamMember
from routing.queue import queue_entries
from routing.roster import on_shift_report

MEDIAN_SAMPLE = 20_000
NO_REGION = "no region"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def local_day(now: datetime, tz: str | None) -> tuple[datetime, datetime]:
    """The asker's calendar day around ``now`` as a UTC ``[start, end)`` pair."""
    zone_ = zone(tz)
    day = now.astimezone(zone_).date()
    start = datetime.combine(day, time(0), tzinfo=zone_)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone_)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- who is on shift -------------------------------------------------------------------


@dataclass(frozen=True)
class MemberOnShift:
    member_id: int
    name: str
    role: str
    region: str
    timezone: str
    local_time: datetime
    availability: str
    load: int
    capacity: int
    shift_ends_at: datetime | None
    slack_user_id: str | None = None


async def on_shift(session: AsyncSession, now: datetime | None = None) -> list[MemberOnShift]:
    """Members on shift now (who leaves next first), in their own zone."""
    return [
        MemberOnShift(
            member_id=r.member.id,  # type: ignore[arg-type]
            name=r.member.name,
            role=r.member.role,
            region=r.member.region or NO_REGION,
            timezone=r.member.timezone or "UTC",
            local_time=r.local_time,
            availability=r.availability,
            load=r.load,
            capacity=r.member.capacity,
            shift_ends_at=r.shift_ends_at,
            slack_user_id=r.member.slack_user_id,
        )
        for r in await on_shift_report(session, now)
    ]


# --- the queue and the SLA ---------------------------------------------------------------


@dataclass(frozen=True)
class WaitingConversation:
    conversation_id: int
    customer_id: int
    customer: str
    channel: str
    priority: str
    waited: timedelta
    reason: str = ""  # why nobody took it, as routing said


@dataclass(frozen=True)
class QueueSummary:
    total: int
    oldest_wait: timedelta | None
    waiting: list[WaitingConversation]  # most urgent, then longest waiting, first


async def _names(session: AsyncSession, customer_ids: Sequence[int]) -> dict[int, str]:
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Customer.id, Customer.display_name).where(Customer.id.in_(set(customer_ids)))  # type: ignore[union-attr, call-overload]
    )
    return {cid: (name or f"customer {cid}") for cid, name in rows.all()}


def _waited_from(c: Conversation) -> datetime:
    return _aware(c.waiting_since or c.created_at)


async def queue_summary(
    session: AsyncSession, now: datetime | None = None, limit: int = 50
) -> QueueSummary:
    now = now or utcnow()
    total, oldest = await queue_size(session)
    entries = await queue_entries(session, limit)
    names = await _names(session, [e.conversation.customer_id for e in entries])
    waiting = [
        WaitingConversation(
            conversation_id=e.conversation.id,  # type: ignore[arg-type]
            customer_id=e.conversation.customer_id,
            customer=names.get(e.conversation.customer_id, ""),
            channel=e.conversation.channel,
            priority=e.conversation.priority,
            waited=max(now - _waited_from(e.conversation), timedelta(0)),
            reason=e.wait.reason if e.wait is not None else "",
        )
        for e in entries
    ]
    return QueueSummary(
        total, None if oldest is None else max(now - _aware(oldest), timedelta(0)), waiting
    )


@dataclass(frozen=True)
class SlaBreach:
    conversation_id: int
    customer: str
    channel: str
    priority: str
    assignee: str | None  # None: still in the queue
    waited: timedelta
    target: timedelta


def _late_filter(now: datetime) -> tuple[Any, dict[str, float]] | None:
    """Open conversations with no first answer older than their priority's target, and
    the targets (``HELIOGRAPH_SLA_FIRST_RESPONSE_MINUTES``); None: no target is set."""
    targets = {p: m for p, m in get_settings().sla_first_response_minutes.items() if m and m > 0}
    if not targets:
        return None
    late = [
        (Conversation.priority == p) & (Conversation.created_at <= now - timedelta(minutes=m))  # type: ignore[operator]
        for p, m in targets.items()
    ]
    return (
        and_(
            Conversation.status.in_(("open", "pending")),  # type: ignore[attr-defined]
            Conversation.first_response_at.is_(None),  # type: ignore[union-attr]
            or_(*late),  # type: ignore[arg-type]
        ),
        targets,
    )


async def sla_breach_count(session: AsyncSession, now: datetime | None = None) -> int:
    found = _late_filter(now or utcnow())
    if found is None:
        return 0
    return int((await session.execute(select(func.count()).where(found[0]))).scalar_one())


async def sla_breaches(
    session: AsyncSession, now: datetime | None = None, limit: int = 200
) -> list[SlaBreach]:
    """Open conversations past their first-response target; most overdue first."""
    now = now or utcnow()
    found = _late_filter(now)
    if found is None:
        return []
    late, targets = found
    rows = await session.execute(
        select(Conversation, TeamMember.name)  # type: ignore[call-overload]
        .outerjoin(TeamMember, TeamMember.id == Conversation.assignee_id)  # type: ignore[arg-type]
        .where(late)
        .order_by(Conversation.created_at)
        .limit(limit)
    )
    matched = rows.all()
    names = await _names(session, [c.customer_id for c, _ in matched])
    breaches = [
        SlaBreach(
            conversation_id=c.id,  # type: ignore[arg-type]
            customer=names.get(c.customer_id, ""),
            channel=c.channel,
            priority=c.priority,
            assignee=assignee,
            waited=now - _aware(c.created_at),
            target=timedelta(minutes=targets[c.priority]),
        )
        for c, assignee in matched
    ]
    return sorted(breaches, key=lambda b: b.target - b.waited)


# --- volume and medians --------------------------------------------------------------------


async def _medians(
    session: AsyncSession,
    key: Any,
    start: Any,
    end: Any,
    *where: Any,
) -> dict[Any, timedelta]:
    """The median of ``end - start`` per ``key`` over the conversations matching ``where``
    (the one place a median is computed; see the module docstring). ``key`` may be a
    column of the assignee (``TeamMember.region``)."""
    stmt = (
        select(key, start, end)
        .select_from(Conversation)
        .outerjoin(TeamMember, TeamMember.id == Conversation.assignee_id)  # type: ignore[arg-type]
        .where(start.is_not(None), end.is_not(None), *where)
    )
    rows = await session.execute(stmt.order_by(end.desc()).limit(MEDIAN_SAMPLE))
    spans: dict[Any, list[float]] = defaultdict(list)
    for k, s, e in rows.all():
        spans[k].append(max((_aware(e) - _aware(s)).total_seconds(), 0.0))
    return {k: timedelta(seconds=statistics.median(v)) for k, v in spans.items()}


async def first_response_median(
    session: AsyncSession, since: datetime, until: datetime
) -> timedelta | None:
    """Across channels: conversations opened in ``[since, until)`` that got an answer."""
    found = await _medians(
        session,
        literal("all"),
        Conversation.created_at,
        Conversation.first_response_at,
        Conversation.created_at >= since,  # type: ignore[operator]
        Conversation.created_at < until,  # type: ignore[operator]
    )
    return found.get("all")


@dataclass(frozen=True)
class VolumeLine:
    key: str  # the channel, or the assignee's region
    inbound: int  # customer messages received
    opened: int  # conversations started
    resolved: int
    first_response_median: timedelta | None  # of the conversations opened
    resolution_median: timedelta | None  # of the conversations resolved, from their start


@dataclass(frozen=True)
class VolumeStats:
    since: datetime
    until: datetime
    by_channel: list[VolumeLine]
    by_region: list[VolumeLine]  # the region of the conversation's assignee

    @property
    def total_inbound(self) -> int:
        return sum(line.inbound for line in self.by_channel)

    @property
    def total_opened(self) -> int:
        return sum(line.opened for line in self.by_channel)


async def _counts(
    session: AsyncSession, key: Any, *where: Any, messages: bool = False
) -> dict[Any, int]:
    stmt = select(key, func.count()).select_from(Message if messages else Conversation)
    if messages:
        stmt = stmt.join(Conversation, Conversation.id == Message.conversation_id)  # type: ignore[arg-type]
    stmt = stmt.outerjoin(TeamMember, TeamMember.id == Conversation.assignee_id)  # type: ignore[arg-type]
    rows = await session.execute(stmt.where(*where).group_by(key))
    return {k: int(n) for k, n in rows.all()}


async def _volume_by(
    session: AsyncSession, key: Any, since: datetime, until: datetime
) -> list[VolumeLine]:
    c = Conversation
    opened_in = (c.created_at >= since, c.created_at < until)  # type: ignore[operator]
    resolved_in = (c.resolved_at >= since, c.resolved_at < until)  # type: ignore[operator]
    inbound = await _counts(
        session,
        key,
        Message.direction == "in",
        Message.created_at >= since,  # type: ignore[operator]
        Message.created_at < until,  # type: ignore[operator]
        messages=True,
    )
    opened = await _counts(session, key, *opened_in)
    resolved = await _counts(session, key, *resolved_in)
    first = await _medians(session, key, c.created_at, c.first_response_at, *opened_in)
    resolution = await _medians(session, key, c.created_at, c.resolved_at, *resolved_in)
    keys = sorted(set(inbound) | set(opened) | set(resolved), key=lambda k: (k is None, str(k)))
    return [
        VolumeLine(
            key=k if k is not None else NO_REGION,
            inbound=inbound.get(k, 0),
            opened=opened.get(k, 0),
            resolved=resolved.get(k, 0),
            first_response_median=first.get(k),
            resolution_median=resolution.get(k),
        )
        for k in keys
    ]


async def volume_stats(session: AsyncSession, since: datetime, until: datetime) -> VolumeStats:
    """Per channel and per assignee region, for ``[since, until)``."""
    return VolumeStats(
        since,
        until,
        await _volume_by(session, Conversation.channel, since, until),
        await _volume_by(session, TeamMember.region, since, until),
    )


# --- the CEO's pulse ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pulse:
    now: datetime
    regions: dict[str, list[MemberOnShift]]  # region -> who is on shift there
    open: int  # conversations not resolved
    waiting: int  # of those, in the queue
    oldest_wait: timedelta | None
    first_response_median_today: timedelta | None
    sla_breaches: int


async def pulse(session: AsyncSession, now: datetime | None = None, tz: str | None = None) -> Pulse:
    now = now or utcnow()
    regions: dict[str, list[MemberOnShift]] = defaultdict(list)
    for member in await on_shift(session, now):
        regions[member.region].append(member)
    open_count = (
        await session.execute(select(func.count()).where(Conversation.status != "resolved"))  # type: ignore[arg-type]
    ).scalar_one()
    waiting, oldest = await queue_size(session)
    since, until = local_day(now, tz)
    return Pulse(
        now=now,
        regions=dict(sorted(regions.items())),
        open=int(open_count),
        waiting=waiting,
        oldest_wait=None if oldest is None else max(now - _aware(oldest), timedelta(0)),
        first_response_median_today=await first_response_median(session, since, until),
        sla_breaches=await sla_breach_count(session, now),
    )


# --- customers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JourneyStep:
    from_stage: str
    to_stage: str
    at: datetime
    rule: str


@dataclass(frozen=True)
class ConversationLine:
    conversation_id: int
    channel: str
    status: str
    priority: str
    assignee: str | None
    last_message_at: datetime


@dataclass(frozen=True)
class CustomerSummary:
    customer_id: int
    name: str
    emails: list[str]
    phones: list[str]
    timezone: str | None
    language: str | None
    journey_stage: str
    journey: list[JourneyStep]  # oldest first
    lifetime_value: Decimal
    vip: bool
    open_conversations: list[ConversationLine]
    last_contact: datetime | None  # the latest message either way
    open_interventions: list[str] = field(default_factory=list)  # their reasons


async def customer_summary(
    session: AsyncSession, query: str, limit: int = 3
) -> list[CustomerSummary]:
    """Customers matching an email, phone, channel id or the start of a name."""
    return [await _summary(session, c) for c in await search_customers(session, query, limit)]


async def _summary(session: AsyncSession, customer: Customer) -> CustomerSummary:
    cid: int = customer.id  # type: ignore[assignment]
    contacts = await contacts_of(session, cid)
    rows = await session.execute(
        select(Conversation, TeamMember.name)  # type: ignore[call-overload]
        .outerjoin(TeamMember, TeamMember.id == Conversation.assignee_id)  # type: ignore[arg-type]
        .where(Conversation.customer_id == cid, Conversation.status != "resolved")
        .order_by(Conversation.last_message_at.desc())  # type: ignore[attr-defined]
    )
    last = (
        await session.execute(
            select(func.max(Message.created_at)).where(Message.customer_id == cid)  # type: ignore[arg-type]
        )
    ).scalar()
    reasons = await session.execute(
        select(Intervention.reason)  # type: ignore[call-overload]
        .where(Intervention.customer_id == cid, Intervention.state == "open")
        .order_by(Intervention.id.desc())  # type: ignore[union-attr]
    )
    return CustomerSummary(
        customer_id=cid,
        name=customer.display_name or f"customer {cid}",
        emails=[p.value for p in contacts if p.kind == "email"],
        phones=[p.value for p in contacts if p.kind == "phone"],
        timezone=customer.timezone,
        language=customer.language,
        journey_stage=customer.journey_stage,
        journey=[
            JourneyStep(j.from_stage, j.to_stage, _aware(j.at), j.rule)
            for j in await journey_of(session, cid)
        ],
        lifetime_value=Decimal(customer.lifetime_value or 0),
        vip=customer.vip,
        open_conversations=[
            ConversationLine(
                c.id,  # type: ignore[arg-type]
                c.channel,
                c.status,
                c.priority,
                assignee,
                _aware(c.last_message_at),
            )
            for c, assignee in rows.all()
        ],
        last_contact=None if last is None else _aware(last),
        open_interventions=list(reasons.scalars().all()),
    )


@dataclass(frozen=True)
class AtRisk:
    customer_id: int
    name: str
    lifetime_value: Decimal
    vip: bool
    journey_stage: str
    rules: list[str]  # the open interventions' rules, newest first
    reasons: list[str]
    since: datetime  # the oldest open intervention


async def at_risk(session: AsyncSession, limit: int = 10) -> list[AtRisk]:
    """Customers with open interventions, most valuable (lifetime value) first."""
    top = (
        select(Intervention.customer_id)  # type: ignore[call-overload]
        .where(Intervention.state == "open")
        .group_by(Intervention.customer_id)
        .subquery()
    )
    customers = (
        (
            await session.execute(
                select(Customer)
                .where(Customer.id.in_(select(top.c.customer_id)))  # type: ignore[union-attr]
                .order_by(Customer.lifetime_value.desc(), Customer.id)  # type: ignore[attr-defined, arg-type]
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    if not customers:
        return []
    rows = await session.execute(
        select(Intervention)
        .where(
            Intervention.state == "open",  # type: ignore[arg-type]
            Intervention.customer_id.in_([c.id for c in customers]),  # type: ignore[attr-defined]
        )
        .order_by(Intervention.id.desc())  # type: ignore[union-attr]
    )
    by_customer: dict[int, list[Intervention]] = defaultdict(list)
    for row in rows.scalars():
        by_customer[row.customer_id].append(row)
    return [
        AtRisk(
            customer_id=c.id,  # type: ignore[arg-type]
            name=c.display_name or f"customer {c.id}",
            lifetime_value=Decimal(c.lifetime_value or 0),
            vip=c.vip,
            journey_stage=c.journey_stage,
            rules=[i.rule for i in by_customer[c.id]],  # type: ignore[index]
            reasons=[i.reason for i in by_customer[c.id]],  # type: ignore[index]
            since=min(_aware(i.created_at) for i in by_customer[c.id]),  # type: ignore[index]
        )
        for c in customers
    ]


# --- handoffs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffLine:
    handoff_id: int
    conversation_id: int
    kind: str
    state: str
    from_member: str | None
    to_member: str | None  # None: back to the queue
    created_at: datetime
    acknowledged_at: datetime | None
    time_to_acknowledge: timedelta | None  # None: not (yet) acknowledged


async def handoffs_today(
    session: AsyncSession, now: datetime | None = None, tz: str | None = None, limit: int = 500
) -> list[HandoffLine]:
    """Handoffs since local midnight in ``tz`` (the asker's zone), oldest first."""
    now = now or utcnow()
    since, _ = local_day(now, tz)
    rows = [
        h for h in await list_handoffs(session, limit=limit) if since <= _aware(h.created_at) <= now
    ]
    ids = {m for h in rows for m in (h.from_member_id, h.to_member_id) if m is not None}
    names: dict[int, str] = {}
    if ids:
        found = await session.execute(
            select(TeamMember.id, TeamMember.name).where(TeamMember.id.in_(ids))  # type: ignore[union-attr, call-overload]
        )
        names = dict(found.all())  # type: ignore[arg-type]
    return [
        HandoffLine(
            handoff_id=h.id,  # type: ignore[arg-type]
            conversation_id=h.conversation_id,
            kind=h.kind,
            state=h.state,
            from_member=names.get(h.from_member_id) if h.from_member_id else None,
            to_member=names.get(h.to_member_id) if h.to_member_id else None,
            created_at=_aware(h.created_at),
            acknowledged_at=None if h.acknowledged_at is None else _aware(h.acknowledged_at),
            time_to_acknowledge=None
            if h.acknowledged_at is None
            else _aware(h.acknowledged_at) - _aware(h.created_at),
        )
        for h in reversed(rows)
    ]
