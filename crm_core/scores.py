"""Engagement, health, progression and lifetime value: each score stored beside its inputs.

The inputs are aggregated in SQL for many customers at once (one GROUP BY per chunk of
customers, on the ``(customer_id, day)`` index) and scored by the pure functions below,
so a batch of events, or the nightly pass over everyone, is a few statements.

- engagement, 0-100: recency, 50 points if active within a day, falling linearly to 0 at
  30 days; frequency, 50 points x (active days in the last 30 / 12), capped.
- health, 0-100, low = churn risk: 100 less declining activity (the last 14 days against
  the 14 before: up to 40; 40 when silent for over 28 days), open support tickets (15
  each, up to 30) and live sessions missed in 30 days (10 each, up to 30).
- progression, 0-100, readiness for the next program: 0 without an enrollment; else 50 x
  the best progress (100% once one is completed) + 0.3 x engagement + 10 for a milestone
  in 90 days + 0-10 from satisfaction (5 when unrated).
- lifetime value: purchases less refunds, never below 0.
| lifetime value | money | purchases less refunds, never below 0 |

"Active" means a lesson, course progress, attended live call, community post or milestone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, distinct, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.bulk import chunks, update_rows, upsert
from crm_core.models import ActivityEvent, Customer, CustomerScore, Enrollment
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


def _aggregate_query(customer_ids: list[int], today: int) -> Any:
    e = ActivityEvent
    attended = or_(e.status.is_(None), e.status != "missed")  # type: ignore[union-attr]
    active = and_(e.type.in_(ACTIVE_TYPES), attended)  # type: ignore[attr-defined]
    course = and_(e.type.in_(COURSE_TYPES), attended)  # type: ignore[attr-defined]
    ticket = e.type == "support_ticket"
    recent90 = e.day >= today - 89

    def count_if(*conds: Any) -> Any:
        return func.sum(case((and_(*conds), 1), else_=0))

    return (
        select(
            e.customer_id,
            func.max(case((active, e.occurred_at))),
            func.max(case((course, e.occurred_at))),
            func.max(case((course, e.id))),
            func.count(distinct(case((and_(active, e.day >= today - 29), e.day)))),
            func.count(distinct(case((and_(active, e.day >= today - 13), e.day)))),
            count_if(active, e.day >= today - 13),
            count_if(active, e.day >= today - 27, e.day < today - 13),
            func.count(distinct(case((and_(ticket, e.status == "open", recent90), e.ref)))),
            func.count(
                distinct(case((and_(ticket, e.status.in_(CLOSED_TICKET), recent90), e.ref)))  # type: ignore[union-attr]
            ),
            count_if(ticket, e.status == "open", e.day >= today - 29),
            count_if(e.type == "live_call_attended", e.status == "missed", e.day >= today - 29),
            count_if(e.type == "milestone_reported", recent90),
            func.sum(case((e.type == "purchase", e.amount), else_=0)),
            func.sum(case((e.type == "refund", e.amount), else_=0)),
        )
        .where(e.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
        .group_by(e.customer_id)
    )


async def activity_facts(
    session: AsyncSession, customer_ids: list[int], now: datetime
) -> dict[int, ActivityFacts]:
    today = day_number(now)
    facts: dict[int, ActivityFacts] = {}
    for part in chunks(sorted(set(customer_ids))):
        for row in (await session.execute(_aggregate_query(list(part), today))).all():
            opened, closed = int(row[8] or 0), int(row[9] or 0)
            facts[row[0]] = ActivityFacts(
                last_activity_at=row[1],
                last_course_activity_at=row[2],
                last_course_event_id=row[3],
                active_days_30=int(row[4] or 0),
                active_days_14=int(row[5] or 0),
                events_last_14=int(row[6] or 0),
                events_prior_14=int(row[7] or 0),
                open_tickets=max(opened - closed, 0),
                tickets_30=int(row[10] or 0),
                missed_sessions_30=int(row[11] or 0),
                milestones_90=int(row[12] or 0),
                purchases=_money(row[13]),
                refunds=_money(row[14]),
            )
    return facts


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
            .where(en.customer_id.in_(list(part)))  # type: ignore[attr-defined]
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


def _score_row(
    customer_id: int, f: ActivityFacts, e: EnrollmentFacts, now: datetime
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
    }


_SCORE_COLUMNS = [
    c
    for c in CustomerScore.__table__.columns.keys()
    if c != "customer_id"  # type: ignore[attr-defined]
]


async def _current_ltv(session: AsyncSession, customer_ids: list[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for part in chunks(sorted(customer_ids)):
        rows = await session.execute(
            select(Customer.id, Customer.lifetime_value).where(Customer.id.in_(part))  # type: ignore[call-overload, union-attr]
        )
        found.update(dict(rows.all()))
    return found


async def recompute(
    session: AsyncSession,
    customer_ids: list[int],
    now: datetime | None = None,
    known_ltv: dict[int, Any] | None = None,
) -> dict[int, ActivityFacts]:
    """Recompute every score of these customers (and their lifetime value, written only
    where it changed) in a few statements; returns the activity facts used, for the
    journey rules. ``known_ltv``: the customers' current lifetime values, if at hand."""
    now = now or utcnow()
    facts = await activity_facts(session, customer_ids, now)
    for cid in customer_ids:
        facts.setdefault(cid, ActivityFacts())  # no events (any more): the scores of nothing
    enrolled = await enrollment_facts(session, list(facts))
    rows = [
        _score_row(cid, f, enrolled.get(cid, EnrollmentFacts()), now) for cid, f in facts.items()
    ]
    table = CustomerScore.__table__  # type: ignore[attr-defined]
    for part in chunks(rows, 500):
        await upsert(session, table, list(part), ["customer_id"], _SCORE_COLUMNS)
    current = known_ltv if known_ltv is not None else await _current_ltv(session, list(facts))
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
    without events), a batch per transaction so writers never wait long."""
    now = now or utcnow()
    done = 0
    while True:
        async with db.session() as session:
            ids = list(
                (
                    await session.execute(
                        select(CustomerScore.customer_id)
                        .where(CustomerScore.computed_at < now - STALE_AFTER)
                        .order_by(CustomerScore.computed_at)
                        .limit(batch)
                    )
                )
                .scalars()
                .all()
            )
            if not ids:
                return done
            await recompute(session, ids, now)
            await session.commit()
        done += len(ids)


def facts_dict(f: ActivityFacts) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal | datetime) else v) for k, v in asdict(f).items()}
