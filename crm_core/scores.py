"""Engagement, health, progression and lifetime value: each score stored beside its inputs.

The inputs come from each customer's ``Activity`` (``CustomerScore.activity``): counts
per day for the last ``ACTIVITY_DAYS`` days, the support tickets seen in them, purchases
and refunds, and the latest activity. A batch of events adds its events to the
aggregates of the customers it touches, so recomputing a score reads one row per
customer, never their history; the windows slide with ``now`` because the counts are
kept per day (a day older than every window is dropped). An aggregate that is missing
(a score row from before it existed, or a merge survivor) is rebuilt from the
customer's events. Scores are then computed by the pure functions below, so a batch of
events, or the nightly pass over everyone, is a few statements.

- engagement, 0-100: recency, 50 points if active within a day, falling linearly to 0 at
  30 days; frequency, 50 points x (active days in the last 30 / 12), capped.
- health, 0-100, low = churn risk: 100 less declining activity (the last 14 days against
  the 14 before: up to 40; 40 when silent for over 28 days), open support tickets (15
  each, up to 30) and live sessions missed in 30 days (10 each, up to 30).
- progression, 0-100, readiness for the next program: 0 without an enrollment; else 50 x
  the best progress (100% once one is completed) + 0.3 x engagement + 10 for a milestone
  in 90 days + 0-10 from satisfaction (5 when unrated).
- lifetime value: purchases less refunds, never below 0.

"Active" means a lesson, course progress, attended live call, community post or milestone.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import identity
from crm_core.models import ActivityEvent, Customer, CustomerScore, Enrollment
from heliograph.bulk import among, chunks, is_postgres, update_rows, upsert
from heliograph.db import Database, utcnow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ACTIVE_TYPES = (
    "course_progress",
    "lesson_completed",
    "live_call_attended",
    "community_post",
    "milestone_reported",
)
COURSE_TYPES = ("course_progress", "lesson_completed", "live_call_attended")
CLOSED_TICKET = ("closed", "resolved", "solved")
FULL_FREQUENCY_DAYS = 12  # three active days a week is full marks
STALE_AFTER = timedelta(hours=20)  # the nightly pass recomputes scores older than this
# Days an aggregate keeps: the longest window (90 days) and some slack for a recompute
# whose ``now`` is a little earlier than the last one's.
ACTIVITY_DAYS = 100


def day_number(at: datetime) -> int:
    """Days since 1970-01-01 UTC (``ActivityEvent.day``)."""
    return (at - EPOCH).days


@dataclass
class ActivityFacts:
    """What the scores are computed from, for one customer at one moment."""

    last_activity_at: datetime | None = None
    last_course_activity_at: datetime | None = None
    last_course_event_id: int | None = None
    active_days_30: int = 0
    active_days_14: int = 0
    events_last_14: int = 0
    events_prior_14: int = 0  # 15 to 28 days ago
    open_tickets: int = 0
    tickets_30: int = 0
    missed_sessions_30: int = 0
    milestones_90: int = 0
    purchases: Decimal = Decimal("0")
    refunds: Decimal = Decimal("0")


@dataclass
class EnrollmentFacts:
    enrollments: int = 0
    best_active_progress: int = 0
    completed: int = 0
    satisfaction: float | None = None


def _days(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max((now - since).total_seconds() / 86400, 0.0)


def engagement_score(f: ActivityFacts, now: datetime) -> tuple[int, dict[str, Any]]:
    days = _days(f.last_activity_at, now)
    recency = 0.0 if days is None else 50 * max(0.0, 1 - max(days - 1, 0) / 29)
    frequency = 50 * min(f.active_days_30, FULL_FREQUENCY_DAYS) / FULL_FREQUENCY_DAYS
    score = max(0, min(100, round(recency + frequency)))
    return score, {
        "days_since_activity": None if days is None else round(days, 1),
        "active_days_30": f.active_days_30,
        "recency_points": round(recency, 1),
        "frequency_points": round(frequency, 1),
    }


def health_score(f: ActivityFacts, now: datetime) -> tuple[int, dict[str, Any]]:
    days = _days(f.last_activity_at, now)
    if f.events_prior_14 > 0 and f.events_last_14 < f.events_prior_14:
        decline = 40 * (f.events_prior_14 - f.events_last_14) / f.events_prior_14
    elif f.events_last_14 == 0 and days is not None and days > 28:
        decline = 40.0  # gone quiet: nothing in four weeks
    else:
        decline = 0.0
    support = min(15 * f.open_tickets, 30)
    missed = min(10 * f.missed_sessions_30, 30)
    score = max(0, min(100, round(100 - decline - support - missed)))
    risk = "high" if score < 40 else "medium" if score < 70 else "low"
    return score, {
        "churn_risk": risk,
        "events_last_14": f.events_last_14,
        "events_prior_14": f.events_prior_14,
        "decline_penalty": round(decline, 1),
        "open_tickets": f.open_tickets,
        "support_penalty": support,
        "missed_sessions_30": f.missed_sessions_30,
        "missed_penalty": missed,
    }


def progression_score(
    e: EnrollmentFacts, engagement: int, f: ActivityFacts
) -> tuple[int, dict[str, Any]]:
    if e.enrollments == 0:
        return 0, {"enrollments": 0, "why": "not enrolled in any program"}
    progress = 100 if e.completed else e.best_active_progress
    progress_points = 50 * progress / 100
    engagement_points = 0.3 * engagement
    milestone_points = 10 if f.milestones_90 else 0
    satisfaction_points = 5.0 if e.satisfaction is None else 10 * (e.satisfaction - 1) / 4
    total = progress_points + engagement_points + milestone_points + satisfaction_points
    return max(0, min(100, round(total))), {
        "progress": progress,
        "completed_programs": e.completed,
        "progress_points": round(progress_points, 1),
        "engagement_points": round(engagement_points, 1),
        "milestones_90": f.milestones_90,
        "milestone_points": milestone_points,
        "satisfaction": e.satisfaction,
        "satisfaction_points": round(satisfaction_points, 1),
    }


def lifetime_value(f: ActivityFacts) -> tuple[Decimal, dict[str, Any]]:
    value = max(f.purchases - f.refunds, Decimal("0")).quantize(Decimal("0.01"))
    return value, {"purchases": str(f.purchases), "refunds": str(f.refunds)}


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


# Where each count sits in a day's bucket of ``Activity.days``.
_ACTIVE, _MISSED, _OPENED, _MILESTONES = range(4)


@dataclass
class Activity:
    """One customer's running aggregates: everything ``ActivityFacts`` needs, at any
    ``now``, without the events. ``days``: day number -> [active events, missed live
    sessions, tickets opened, milestones]; ``tickets``: ref -> [last day seen open,
    last day seen closed]. Both keep the last ``ACTIVITY_DAYS`` days only."""

    days: dict[int, list[int]] = field(default_factory=dict)
    tickets: dict[str, list[int | None]] = field(default_factory=dict)
    purchases: Decimal = Decimal("0")
    refunds: Decimal = Decimal("0")
    last_activity_at: datetime | None = None
    last_course_activity_at: datetime | None = None
    last_course_event_id: int | None = None

    def add(
        self,
        type_: str,
        day: int,
        status: str | None,
        occurred_at: datetime,
        amount: Any,
        ref: str | None,
        event_id: int,
    ) -> None:
        """Count one activity event (each event once: the caller adds only new ones)."""
        if type_ == "purchase" or type_ == "refund":
            money = Decimal(str(amount or 0))
            if type_ == "purchase":
                self.purchases += money
            else:
                self.refunds += money
            return
        slot: int | None = None
        if type_ in ACTIVE_TYPES and status != "missed":
            slot = _MILESTONES if type_ == "milestone_reported" else _ACTIVE
            if self.last_activity_at is None or occurred_at > self.last_activity_at:
                self.last_activity_at = occurred_at
            if type_ in COURSE_TYPES:
                last = self.last_course_activity_at
                if last is None or occurred_at > last:
                    self.last_course_activity_at = occurred_at
                if self.last_course_event_id is None or event_id > self.last_course_event_id:
                    self.last_course_event_id = event_id
        elif type_ == "live_call_attended":
            slot = _MISSED
        elif type_ == "support_ticket":
            which = 0 if status == "open" else 1 if status in CLOSED_TICKET else None
            if which == 0:
                slot = _OPENED
            if which is not None and ref is not None:
                seen = self.tickets.setdefault(ref, [None, None])
                if seen[which] is None or day > seen[which]:  # type: ignore[operator]
                    seen[which] = day
        if slot is not None:
            bucket = self.days.get(day)
            if bucket is None:
                bucket = self.days[day] = [0, 0, 0, 0]
            bucket[slot] += 1
            if slot == _MILESTONES:
                bucket[_ACTIVE] += 1  # a milestone is activity too

    def facts(self, now: datetime) -> ActivityFacts:
        """The inputs of the scores at ``now`` (days counted back from ``now``'s day)."""
        today = day_number(now)
        f = ActivityFacts(
            last_activity_at=self.last_activity_at,
            last_course_activity_at=self.last_course_activity_at,
            last_course_event_id=self.last_course_event_id,
            purchases=self.purchases.quantize(Decimal("0.01")),
            refunds=self.refunds.quantize(Decimal("0.01")),
        )
        for day, (active, missed, opened, milestones) in self.days.items():
            if day >= today - 29:
                f.missed_sessions_30 += missed
                f.tickets_30 += opened
                if active:
                    f.active_days_30 += 1
            if active:
                if day >= today - 13:
                    f.active_days_14 += 1
                    f.events_last_14 += active
                elif day >= today - 27:
                    f.events_prior_14 += active
            if day >= today - 89:
                f.milestones_90 += milestones
        since = today - 89
        opened_refs = sum(1 for o, _ in self.tickets.values() if o is not None and o >= since)
        closed_refs = sum(1 for _, c in self.tickets.values() if c is not None and c >= since)
        f.open_tickets = max(opened_refs - closed_refs, 0)
        return f

    def dump(self, now: datetime) -> dict[str, Any]:
        """The JSON kept in ``CustomerScore.activity``, without days past keeping: days
        flat (day, then its four counts), latest activity as microseconds since 1970."""
        oldest = day_number(now) - ACTIVITY_DAYS
        days = self.days
        return {
            "days": [x for d in sorted(days) if d >= oldest for x in (d, *days[d])],
            "tickets": [
                [ref, o, c]
                for ref, (o, c) in self.tickets.items()
                if (o is not None and o >= oldest) or (c is not None and c >= oldest)
            ],
            "purchases": str(self.purchases),
            "refunds": str(self.refunds),
            "last": [
                _micros(self.last_activity_at),
                _micros(self.last_course_activity_at),
                self.last_course_event_id,
            ],
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Activity:
        """From ``dump``'s JSON."""
        flat = data["days"]
        last, course, event_id = data["last"]
        return cls(
            {flat[i]: flat[i + 1 : i + 5] for i in range(0, len(flat), 5)},
            {t[0]: [t[1], t[2]] for t in data["tickets"]},
            Decimal(data["purchases"]),
            Decimal(data["refunds"]),
            _from_micros(last),
            _from_micros(course),
            event_id,
        )


def _micros(at: datetime | None) -> int | None:
    return None if at is None else (at - EPOCH) // timedelta(microseconds=1)


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def parse_activity(value: Any) -> Activity | None:
    """A ``CustomerScore.activity`` value as read; None when there is none, or it is not
    in this format (then it is rebuilt from the events)."""
    return Activity.load(value) if value and "last" in value else None


_EVENT_COLUMNS = (
    ActivityEvent.customer_id,
    ActivityEvent.type,
    ActivityEvent.day,
    ActivityEvent.status,
    ActivityEvent.occurred_at,
    ActivityEvent.amount,
    ActivityEvent.ref,
    ActivityEvent.id,
)


def add_events(activity: Mapping[int, Activity], events: Iterable[Any]) -> None:
    """Add events (rows or dicts with ``_EVENT_COLUMNS``' names) to their customers'
    aggregates; events of customers not in ``activity`` are skipped."""
    for e in events:
        get = e.__getitem__ if isinstance(e, dict) else e._mapping.__getitem__
        found = activity.get(get("customer_id"))
        if found is not None:
            found.add(
                get("type"),
                get("day"),
                get("status"),
                get("occurred_at"),
                get("amount"),
                get("ref"),
                get("id"),
            )


async def rebuild_activity(session: AsyncSession, customer_ids: list[int]) -> dict[int, Activity]:
    """The aggregates of these customers from all their events (by
    ``ix_activity_event_customer``): for rows that lack one, never per batch."""
    found = {cid: Activity() for cid in customer_ids}
    for part in chunks(sorted(customer_ids)):
        stmt = select(*_EVENT_COLUMNS).where(ActivityEvent.customer_id.in_(part))  # type: ignore[attr-defined]
        add_events(found, (await session.execute(stmt)).all())
    return found


async def stored_activity(session: AsyncSession, customer_ids: list[int]) -> dict[int, Activity]:
    """The aggregates kept on these customers' score rows (those that have one)."""
    s = CustomerScore
    found: dict[int, Activity] = {}
    for part in chunks(sorted(customer_ids)):
        stmt = select(s.customer_id, s.activity).where(
            among(session, s.customer_id, part),
            s.activity.is_not(None),  # type: ignore[union-attr]
        )
        for cid, value in (await session.execute(stmt)).all():
            if (activity := parse_activity(value)) is not None:
                found[cid] = activity
    return found


async def forget_activity(session: AsyncSession, customer_ids: list[int]) -> None:
    """Have these customers' aggregates rebuilt from their events at the next recompute
    (their events changed hands)."""
    await session.execute(
        update(CustomerScore)
        .where(CustomerScore.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
        .values(activity=None)
    )


async def _merging(session: AsyncSession, source_id: int, target_id: int) -> dict[str, int]:
    """Merge hook, run before crm_core.merging's (which imports this module first): the
    survivor's events are about to include the other profile's, so its aggregate is
    rebuilt when merging recomputes its scores."""
    await forget_activity(session, [source_id, target_id])
    return {}


identity.merge_hooks.append(_merging)


async def activity_facts(
    session: AsyncSession,
    customer_ids: list[int],
    now: datetime,
    new_events: Iterable[Any] = (),
    stored: dict[int, Activity] | None = None,
) -> tuple[dict[int, ActivityFacts], dict[int, Activity]]:
    """The facts at ``now`` for these customers, and their updated aggregates.

    ``new_events``: events just inserted for them (dicts with ``_EVENT_COLUMNS``' names),
    added to the stored aggregates; a customer without one is rebuilt from the events
    table instead, which holds the new events already. ``stored``: their aggregates as
    the caller read them already (``parse_activity``), else they are read here.
    """
    ids = sorted(set(customer_ids))
    activity = stored if stored is not None else await stored_activity(session, ids)
    add_events(activity, new_events)
    missing = [cid for cid in ids if cid not in activity]
    if missing:
        activity.update(await rebuild_activity(session, missing))
    mine = {cid: activity[cid] for cid in ids}  # ``stored`` may hold others: not theirs
    return {cid: a.facts(now) for cid, a in mine.items()}, mine


async def enrollment_facts(
    session: AsyncSession, customer_ids: list[int]
) -> dict[int, EnrollmentFacts]:
    en = Enrollment
    found: dict[int, EnrollmentFacts] = {}
    for part in chunks(sorted(set(customer_ids))):
        rows = await session.execute(
            select(
                en.customer_id,
                func.count(),
                func.max(case((en.status == "active", en.progress), else_=0)),
                func.sum(case((en.status == "completed", 1), else_=0)),
                func.avg(en.satisfaction),
            )
            .where(among(session, en.customer_id, part))
            .group_by(en.customer_id)
        )
        for cid, count, best, completed, satisfaction in rows.all():
            found[cid] = EnrollmentFacts(
                int(count),
                int(best or 0),
                int(completed or 0),
                None if satisfaction is None else round(float(satisfaction), 2),
            )
    return found


def enrollment_facts_of(held: Mapping[int, list[dict[str, Any]]]) -> dict[int, EnrollmentFacts]:
    """``enrollment_facts`` from enrollment rows at hand (every enrollment of each
    customer in ``held``), without a query."""
    found: dict[int, EnrollmentFacts] = {}
    for cid, rows in held.items():
        rated = [r["satisfaction"] for r in rows if r["satisfaction"] is not None]
        found[cid] = EnrollmentFacts(
            len(rows),
            max((r["progress"] or 0) if r["status"] == "active" else 0 for r in rows),
            sum(r["status"] == "completed" for r in rows),
            round(sum(rated) / len(rated), 2) if rated else None,
        )
    return found


def _score_row(
    customer_id: int, f: ActivityFacts, e: EnrollmentFacts, activity: Activity, now: datetime
) -> dict[str, Any]:
    engagement, engagement_inputs = engagement_score(f, now)
    health, health_inputs = health_score(f, now)
    progression, progression_inputs = progression_score(e, engagement, f)
    ltv, ltv_inputs = lifetime_value(f)
    return {
        "customer_id": customer_id,
        "engagement": engagement,
        "engagement_inputs": engagement_inputs,
        "health": health,
        "health_inputs": health_inputs,
        "progression": progression,
        "progression_inputs": progression_inputs,
        "ltv_inputs": {**ltv_inputs, "lifetime_value": str(ltv)},
        "last_activity_at": f.last_activity_at,
        "last_course_activity_at": f.last_course_activity_at,
        "last_course_event_id": f.last_course_event_id,
        "computed_at": now,
        "activity": activity.dump(now),
    }


_SCORE_COLUMNS = [
    c
    for c in CustomerScore.__table__.columns.keys()
    if c != "customer_id"  # type: ignore[attr-defined]
]


async def _current_ltv(session: AsyncSession, customer_ids: list[int]) -> dict[int, Any]:
    """The customers' lifetime values; on PostgreSQL their rows are locked (in id order,
    as a batch of events locks them) until commit, so no batch changes an aggregate
    between this recompute's read and its write."""
    found: dict[int, Any] = {}
    for part in chunks(sorted(customer_ids)):
        stmt = select(Customer.id, Customer.lifetime_value).where(Customer.id.in_(part))  # type: ignore[call-overload, union-attr]
        if is_postgres(session):
            stmt = stmt.order_by(Customer.id).with_for_update()
        found.update(dict((await session.execute(stmt)).all()))
    return found


async def recompute(
    session: AsyncSession,
    customer_ids: list[int],
    now: datetime | None = None,
    known_ltv: dict[int, Any] | None = None,
    new_events: Iterable[Any] = (),
    stored: dict[int, Activity] | None = None,
    enrolled: dict[int, EnrollmentFacts] | None = None,
) -> dict[int, ActivityFacts]:
    """Recompute every score of these customers (and their lifetime value, written only
    where it changed) in a few statements; returns the activity facts used, for the
    journey rules. ``known_ltv``: the customers' current lifetime values, if at hand
    (their rows locked by the caller). ``new_events``: the events a batch just inserted
    for them, added to their aggregates, and ``stored`` the aggregates read with the
    locks (see ``activity_facts``); ``enrolled``: the enrollment facts of some of them,
    known already (``enrollment_facts_of``)."""
    now = now or utcnow()
    current = known_ltv if known_ltv is not None else await _current_ltv(session, customer_ids)
    facts, activity = await activity_facts(session, customer_ids, now, new_events, stored)
    known = enrolled or {}
    enrolled = {**await enrollment_facts(session, [c for c in facts if c not in known]), **known}
    rows = [
        _score_row(cid, f, enrolled.get(cid, EnrollmentFacts()), activity[cid], now)
        for cid, f in facts.items()
    ]
    table = CustomerScore.__table__  # type: ignore[attr-defined]
    for part in chunks(rows, 500):
        await upsert(session, table, list(part), ["customer_id"], _SCORE_COLUMNS)
    changed = []
    for cid, f in facts.items():
        value = lifetime_value(f)[0]
        if value != _money(current.get(cid)):
            changed.append({"id": cid, "lifetime_value": value, "updated_at": now})
    await update_rows(session, Customer.__table__, changed)  # type: ignore[attr-defined]
    return facts


async def scores_of(session: AsyncSession, customer_id: int) -> CustomerScore | None:
    return await session.get(CustomerScore, customer_id)


async def refresh_stale(db: Database, now: datetime | None = None, batch: int = 2000) -> int:
    """The nightly pass: recompute scores older than ``STALE_AFTER`` (recency decays
    without events), a batch per transaction so writers never wait long. It walks the
    score rows in customer order (the primary key; ``computed_at`` has no index, which
    every event's write would pay for), so the pass reads the table once however many
    are stale."""
    now = now or utcnow()
    s = CustomerScore

    async def one_batch(session: AsyncSession, after: int) -> list[int]:
        ids = list(
            (
                await session.execute(
                    select(s.customer_id)
                    .where(s.customer_id > after, s.computed_at < now - STALE_AFTER)  # type: ignore[arg-type, operator]
                    .order_by(s.customer_id)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if ids:
            await recompute(session, ids, now)
        return ids

    done, after = 0, 0
    while ids := await db.run_session(functools.partial(one_batch, after=after)):
        done += len(ids)
        after = ids[-1]
    return done


def facts_dict(f: ActivityFacts) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal | datetime) else v) for k, v in asdict(f).items()}
