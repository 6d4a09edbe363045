"""Scores at their edges, each explained by its inputs; recomputed on events and nightly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from crm_core import scores
from crm_core.identity import merge_customers
from crm_core.models import Customer, CustomerScore
from crm_core.scores import (
    ActivityFacts,
    EnrollmentFacts,
    engagement_score,
    health_score,
    lifetime_value,
    progression_score,
)
from heliograph.db import Database
from tests.utils.crm_world import days_ago, ev, ingest, make_programs
from tests.utils.db import rows

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def active(days_ago: float | None, active_days: int = 0) -> ActivityFacts:
    last = None if days_ago is None else NOW - timedelta(days=days_ago)
    return ActivityFacts(last_activity_at=last, active_days_30=active_days)


@pytest.mark.parametrize(
    ("facts", "score"),
    [
        (active(None), 0),  # never active
        (active(0, 12), 100),  # today, three days a week
        (active(0.5, 40), 100),  # frequency is capped
        (active(1, 0), 50),  # recency is full for a day
        (active(15.5, 0), 25),  # half-way down
        (active(30, 0), 0),  # a month: nothing left of recency
        (active(45, 6), 25),  # long gone, but it was frequent
    ],
)
def test_engagement_is_recency_plus_frequency(facts: ActivityFacts, score: int) -> None:
    value, inputs = engagement_score(facts, NOW)
    assert value == score
    assert inputs["recency_points"] + inputs["frequency_points"] == pytest.approx(score, abs=0.5)


@pytest.mark.parametrize(
    ("facts", "score", "risk"),
    [
        (ActivityFacts(), 100, "low"),  # nothing to worry about yet
        (ActivityFacts(last_activity_at=NOW, events_last_14=5, events_prior_14=5), 100, "low"),
        (ActivityFacts(last_activity_at=NOW, events_last_14=2, events_prior_14=4), 80, "low"),
        (ActivityFacts(last_activity_at=NOW - timedelta(days=20), events_prior_14=6), 60, "medium"),
        (ActivityFacts(last_activity_at=NOW - timedelta(days=40)), 60, "medium"),  # silent
        (ActivityFacts(last_activity_at=NOW, events_last_14=3, open_tickets=1), 85, "low"),
        (ActivityFacts(last_activity_at=NOW, events_last_14=3, open_tickets=5), 70, "low"),
        (ActivityFacts(last_activity_at=NOW, events_last_14=3, missed_sessions_30=2), 80, "low"),
        (ActivityFacts(last_activity_at=NOW, events_last_14=3, missed_sessions_30=9), 70, "low"),
        (
            ActivityFacts(
                last_activity_at=NOW - timedelta(days=20),
                events_prior_14=3,
                open_tickets=4,
                missed_sessions_30=4,
            ),
            0,
            "high",
        ),
    ],
)
def test_health_falls_with_decline_open_tickets_and_missed_sessions(
    facts: ActivityFacts, score: int, risk: str
) -> None:
    value, inputs = health_score(facts, NOW)
    assert (value, inputs["churn_risk"]) == (score, risk)
    penalties = inputs["decline_penalty"] + inputs["support_penalty"] + inputs["missed_penalty"]
    assert value == max(0, round(100 - penalties))


@pytest.mark.parametrize(
    ("enrolled", "engagement", "milestones", "score"),
    [
        (EnrollmentFacts(), 100, 3, 0),  # not a student: no next program to be ready for
        (EnrollmentFacts(1, 50, 0, None), 0, 0, 30),  # half-way, unrated: 25 + 5
        (EnrollmentFacts(1, 0, 1, 5.0), 100, 1, 100),  # completed, engaged, proud, happy
        (EnrollmentFacts(2, 20, 1, 1.0), 50, 0, 65),  # completed one: 50 + 15 + 0 + 0
    ],
)
def test_progression_is_readiness_for_the_next_program(
    enrolled: EnrollmentFacts, engagement: int, milestones: int, score: int
) -> None:
    value, inputs = progression_score(enrolled, engagement, ActivityFacts(milestones_90=milestones))
    assert value == score
    assert inputs  # always explained


@pytest.mark.parametrize(
    ("purchases", "refunds", "value"),
    [("0", "0", "0.00"), ("349.00", "99.00", "250.00"), ("99.00", "149.00", "0.00")],
)
def test_lifetime_value_is_purchases_less_refunds(purchases: str, refunds: str, value: str) -> None:
    ltv, inputs = lifetime_value(
        ActivityFacts(purchases=Decimal(purchases), refunds=Decimal(refunds))
    )
    assert ltv == Decimal(value)
    assert (inputs["purchases"], inputs["refunds"]) == (purchases, refunds)


async def test_scores_follow_events_and_are_stored_with_their_inputs(database: Database) -> None:
    await make_programs(database)
    await ingest(
        database,
        [
            ev("purchase", "s1", at=days_ago(25), program="mind-1", amount="99.00"),
            ev("purchase", "s2", at=days_ago(25), program="body-1", amount="79.00"),
            ev("refund", "s3", at=days_ago(24), program="body-1", amount="79.00"),
            *[ev("lesson_completed", f"l{d}", at=days_ago(d), program="mind-1") for d in (1, 2, 3)],
            ev("support_ticket", "t1", at=days_ago(2), ticket_id="T-1"),
            ev("live_call_attended", "c1", at=days_ago(4), program="mind-1", attended=False),
            ev(
                "course_progress",
                "p1",
                at=days_ago(1),
                program="mind-1",
                progress=40,
                satisfaction=4,
            ),
        ],
    )
    (customer,) = await rows(database, Customer)
    (score,) = await rows(database, CustomerScore)
    assert customer.lifetime_value == Decimal("99.00")
    assert score.ltv_inputs == {
        "purchases": "178.00",
        "refunds": "79.00",
        "lifetime_value": "99.00",
    }
    assert score.engagement_inputs["active_days_30"] == 3
    assert (
        score.health_inputs["open_tickets"] == 1 and score.health_inputs["missed_sessions_30"] == 1
    )
    assert score.health == 75
    assert (
        score.progression_inputs["progress"] == 40 and score.progression_inputs["satisfaction"] == 4
    )

    closed = await ingest(database, [ev("support_ticket", "t2", ticket_id="T-1", status="closed")])
    assert closed.accepted == 1
    (score,) = await rows(database, CustomerScore)
    assert score.health_inputs["open_tickets"] == 0 and score.health == 90


async def test_the_nightly_pass_lets_engagement_decay(sqlite_database: Database) -> None:
    await make_programs(sqlite_database)
    await ingest(sqlite_database, [ev("lesson_completed", "n1", program="mind-1")])
    (before,) = await rows(sqlite_database, CustomerScore)
    assert before.engagement > 50
    assert await scores.refresh_stale(sqlite_database) == 0  # fresh: nothing to do
    later = before.computed_at + timedelta(days=20)
    assert await scores.refresh_stale(sqlite_database, now=later) == 1
    (after,) = await rows(sqlite_database, CustomerScore)
    assert after.engagement < before.engagement
    assert after.engagement_inputs["days_since_activity"] == pytest.approx(20, abs=0.1)
    assert after.computed_at == later


async def _scores_by_customer(database: Database) -> dict[int, tuple[object, ...]]:
    return {
        s.customer_id: (
            s.engagement,
            s.engagement_inputs,
            s.health,
            s.health_inputs,
            s.progression,
            s.progression_inputs,
            s.ltv_inputs,
            s.last_activity_at,
            s.last_course_activity_at,
            s.last_course_event_id,
        )
        for s in await rows(database, CustomerScore)
    }


async def _rebuilt(database: Database, now: datetime) -> dict[int, tuple[object, ...]]:
    """The scores recomputed from every event (each aggregate forgotten first)."""
    async with database.session() as session:
        ids = [c.id for c in (await session.execute(select(Customer))).scalars()]
        await scores.forget_activity(session, ids)
        await scores.recompute(session, ids, now)
        await session.commit()
    return await _scores_by_customer(database)


async def test_scores_kept_batch_by_batch_equal_scores_from_all_events(database: Database) -> None:
    """The per-customer aggregates a batch updates give the scores every event gives, then
    and weeks later (the windows slide with the clock, the aggregates are never re-read
    from the events), for activity, tickets opened and closed, missed calls and money."""
    await make_programs(database)
    now = datetime.now(UTC)
    ana, bo = "ana@example.com", "bo@example.com"
    batches = [
        [
            ev("purchase", "k1", ana, at=days_ago(60, now), program="mind-1", amount="99.00"),
            ev(
                "lesson_completed",
                "k2",
                ana,
                at=days_ago(40, now),
                program="mind-1",
                satisfaction=3,
            ),
            ev("support_ticket", "k3", bo, at=days_ago(80, now), ticket_id="T-9"),
        ],
        [
            *[
                ev("lesson_completed", f"l{d}", ana, at=days_ago(d, now), program="mind-1")
                for d in (20, 16, 15, 9, 3, 3)
            ],
            ev(
                "live_call_attended",
                "k4",
                ana,
                at=days_ago(5, now),
                program="mind-1",
                attended=False,
            ),
            ev("support_ticket", "k5", ana, at=days_ago(6, now), ticket_id="T-1"),
            ev("support_ticket", "k6", ana, at=days_ago(2, now), ticket_id="T-2"),
            ev("community_post", "k7", bo, at=days_ago(25, now)),
        ],
        [
            ev("support_ticket", "k8", ana, at=days_ago(1, now), ticket_id="T-1", status="closed"),
            ev("milestone_reported", "k9", ana, at=days_ago(1, now), milestone="Week 3"),
            ev("refund", "k10", ana, at=days_ago(1, now), program="mind-1", amount="20.50"),
            ev("course_progress", "k11", bo, at=days_ago(2, now), program="body-1", progress=30),
            ev(
                "lesson_completed",
                "k13",
                ana,
                at=days_ago(1, now),
                program="body-1",
                satisfaction=4,
            ),
            ev(
                "support_ticket", "k12", bo, at=days_ago(1, now), ticket_id="T-9", status="resolved"
            ),
        ],
    ]
    for batch in batches:
        await ingest(database, batch, now=now)
    kept = await _scores_by_customer(database)
    assert len(kept) == 2
    assert await _rebuilt(database, now) == kept
    ana_score = max(await rows(database, CustomerScore), key=lambda s: s.engagement)
    assert ana_score.activity is not None and ana_score.activity["days"]
    assert ana_score.progression_inputs["satisfaction"] == 3.5  # two programs rated 3 and 4

    later = now + timedelta(days=21)  # two weeks of the history slide out of the windows
    assert await scores.refresh_stale(database, now=later) == 2
    slid = await _scores_by_customer(database)
    assert slid != kept
    assert await _rebuilt(database, later) == slid


async def test_a_merge_survivor_scores_both_histories(database: Database) -> None:
    await make_programs(database)
    now = datetime.now(UTC)
    await ingest(database, [ev("lesson_completed", "a1", "a@example.com", at=days_ago(3, now),
                               program="mind-1")], now=now)  # fmt: skip
    await ingest(database, [ev("lesson_completed", "b1", "b@example.com", at=days_ago(1, now),
                               program="mind-1")], now=now)  # fmt: skip
    a, b = await rows(database, Customer)
    async with database.session() as session:
        await merge_customers(session, a.id, b.id, actor="test")  # type: ignore[arg-type]
        await session.commit()
    (score,) = await rows(database, CustomerScore)
    assert score.customer_id == a.id
    assert score.engagement_inputs["active_days_30"] == 2  # both profiles' days
    await ingest(database, [ev("community_post", "a2", "b@example.com", at=now)], now=now)
    (score,) = await rows(database, CustomerScore)
    assert score.engagement_inputs["active_days_30"] == 3
    assert await _rebuilt(database, now) == await _scores_by_customer(database)
