"""The read queries behind the lead commands (Slack ``/hg``) and the CEO bot (Telegram).

Every function takes an ``AsyncSession`` and an instant (``now``, default: the current
time) and returns plain dataclasses; formatting belongs to the surface. "Today" is the
asker's local day: the functions that need one take the asker's IANA zone.

Medians are computed in one place, ``_medians``: Python over a bounded read of the
(start, end) pairs, since SQLite has no ``percentile_cont`` and the interval arithmetic
differs between the two engines. ``MEDIAN_SAMPLE`` bounds the read (the most recent rows
of the window win); a day or a week of one team's conversations is far below it.

This package queries no table itself: it composes the owners' read functions
(``inbox.reads``, ``routing.reads``, ``crm_core.reads``, ``handoff.service``...), batch
reads by lists of ids, so a report costs a fixed handful of queries. Where a row needs a
column of another owner (a conversation's assignee name), it hands that owner's column
expression (``routing.reads.member_name``) to the owner of the rows.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import reads as crm_reads
from crm_core.identity import search_customers
from crm_core.profile import zone
from handoff.service import list_handoffs
from heliograph.db import utcnow
from heliograph.settings import get_settings
from inbox import reads as inbox_reads
from inbox.assignment import queue_size
from inbox.models import Conversation
from routing import reads as routing_reads
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


def _waited_from(c: Conversation) -> datetime:
    return _aware(c.waiting_since or c.created_at)


async def queue_summary(
    session: AsyncSession, now: datetime | None = None, limit: int = 50
) -> QueueSummary:
    now = now or utcnow()
    total, oldest = await queue_size(session)
    entries = await queue_entries(session, limit)
    names = await crm_reads.customer_names(session, [e.conversation.customer_id for e in entries])
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


def _targets() -> dict[str, float]:
    """First-response targets in minutes by priority (``HELIOGRAPH_SLA_FIRST_RESPONSE_MINUTES``),
    those set only; empty: no target is set."""
    return {p: m for p, m in get_settings().sla_first_response_minutes.items() if m and m > 0}


async def sla_breach_count(session: AsyncSession, now: datetime | None = None) -> int:
    """Open conversations with no first answer older than their priority's target."""
    targets = _targets()
    if not targets:
        return 0
    return await inbox_reads.late_count(session, now or utcnow(), targets)


async def sla_breaches(
    session: AsyncSession, now: datetime | None = None, limit: int = 200
) -> list[SlaBreach]:
    """Open conversations past their first-response target; most overdue first."""
    now = now or utcnow()
    targets = _targets()
    if not targets:
        return []
    matched = await inbox_reads.late_conversations(
        session, now, targets, limit, assignee=routing_reads.member_name
    )
    names = await crm_reads.customer_names(session, [c.customer_id for c, _ in matched])
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


def _medians(spans: Iterable[tuple[Any, datetime, datetime]]) -> dict[Any, timedelta]:
    """The median of ``end - start`` per key over ``(key, start, end)`` (the one place a
    median is computed; see the module docstring)."""
    found: dict[Any, list[float]] = defaultdict(list)
    for k, s, e in spans:
        found[k].append(max((_aware(e) - _aware(s)).total_seconds(), 0.0))
    return {k: timedelta(seconds=statistics.median(v)) for k, v in found.items()}


async def first_response_median(
    session: AsyncSession, since: datetime, until: datetime
) -> timedelta | None:
    """Across channels: conversations opened in ``[since, until)`` that got an answer."""
    spans = await inbox_reads.spans(
        session, "first_response_at", "created_at", since, until, MEDIAN_SAMPLE
    )
    return _medians(("all", s, e) for _, _, s, e in spans).get("all")


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


Keyed = Callable[[str, int | None], Any]  # (channel, assignee_id) -> the line's key


def _by(counts: dict[inbox_reads.Key, int], key: Keyed) -> dict[Any, int]:
    found: dict[Any, int] = defaultdict(int)
    for (channel, assignee), n in counts.items():
        found[key(channel, assignee)] += n
    return dict(found)


def _lines(
    key: Keyed,
    inbound: dict[inbox_reads.Key, int],
    opened: dict[inbox_reads.Key, int],
    resolved: dict[inbox_reads.Key, int],
    first: list[inbox_reads.Span],
    resolution: list[inbox_reads.Span],
) -> list[VolumeLine]:
    inbound_, opened_, resolved_ = _by(inbound, key), _by(opened, key), _by(resolved, key)
    first_ = _medians((key(ch, a), s, e) for ch, a, s, e in first)
    resolution_ = _medians((key(ch, a), s, e) for ch, a, s, e in resolution)
    keys = sorted(set(inbound_) | set(opened_) | set(resolved_), key=lambda k: (k is None, str(k)))
    return [
        VolumeLine(
            key=k if k is not None else NO_REGION,
            inbound=inbound_.get(k, 0),
            opened=opened_.get(k, 0),
            resolved=resolved_.get(k, 0),
            first_response_median=first_.get(k),
            resolution_median=resolution_.get(k),
        )
        for k in keys
    ]


async def volume_stats(session: AsyncSession, since: datetime, until: datetime) -> VolumeStats:
    """Per channel and per assignee region, for ``[since, until)``: inbox's counts and
    spans by (channel, assignee), read once and summed both ways."""
    inbound = await inbox_reads.inbound_counts(session, since, until)
    opened = await inbox_reads.conversation_counts(session, "created_at", since, until)
    resolved = await inbox_reads.conversation_counts(session, "resolved_at", since, until)
    first = await inbox_reads.spans(
        session, "first_response_at", "created_at", since, until, MEDIAN_SAMPLE
    )
    resolution = await inbox_reads.spans(
        session, "resolved_at", "resolved_at", since, until, MEDIAN_SAMPLE
    )
    members = {a for counts in (inbound, opened, resolved) for _, a in counts}
    members |= {a for _, a, _, _ in (*first, *resolution)}
    regions = await routing_reads.member_regions(session, {m for m in members if m is not None})
    parts = (inbound, opened, resolved, first, resolution)
    return VolumeStats(
        since,
        until,
        _lines(lambda channel, _: channel, *parts),
        _lines(lambda _, member: regions.get(member) if member is not None else None, *parts),  # type: ignore[arg-type]
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
    open_count = await inbox_reads.open_count(session)
    waiting, oldest = await queue_size(session)
    since, until = local_day(now, tz)
    return Pulse(
        now=now,
        regions=dict(sorted(regions.items())),
        open=open_count,
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
    customers = await search_customers(session, query, limit)
    ids = [c.id for c in customers]
    contacts = await crm_reads.contacts_by_customer(session, ids)  # type: ignore[arg-type]
    conversations = await inbox_reads.open_conversations_of(
        session,
        ids,  # type: ignore[arg-type]
        assignee=routing_reads.member_name,
    )
    last = await inbox_reads.last_contacts(session, ids)  # type: ignore[arg-type]
    reasons = await crm_reads.open_interventions(session, ids, newest_first=True)  # type: ignore[arg-type]
    journeys = await crm_reads.journeys_by_customer(session, ids)  # type: ignore[arg-type]
    return [
        CustomerSummary(
            customer_id=cid,
            name=crm_reads.label(cid, customer.display_name),
            emails=[p.value for p in contacts[cid] if p.kind == "email"],
            phones=[p.value for p in contacts[cid] if p.kind == "phone"],
            timezone=customer.timezone,
            language=customer.language,
            journey_stage=customer.journey_stage,
            journey=[
                JourneyStep(j.from_stage, j.to_stage, _aware(j.at), j.rule) for j in journeys[cid]
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
                for c, assignee in conversations[cid]
            ],
            last_contact=_aware(last[cid]) if cid in last else None,
            open_interventions=[i.reason for i in reasons[cid]],
        )
        for customer in customers
        for cid in [customer.id]  # type: ignore[list-item]
    ]


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
    customers = await crm_reads.most_valuable_at_risk(session, limit)
    if not customers:
        return []
    by_customer = await crm_reads.open_interventions(
        session,
        [c.id for c in customers],  # type: ignore[misc]
        newest_first=True,
    )
    return [
        AtRisk(
            customer_id=c.id,  # type: ignore[arg-type]
            name=crm_reads.label(c.id, c.display_name),  # type: ignore[arg-type]
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
    names = await routing_reads.member_names(
        session, {m for h in rows for m in (h.from_member_id, h.to_member_id) if m is not None}
    )
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
