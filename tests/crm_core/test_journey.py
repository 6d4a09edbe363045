"""The journey: each stage rule, never backwards, every change kept with its cause."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crm_core.journey import JOURNEY_RULES, EventView, advance
from crm_core.models import JOURNEY_STAGES, ActivityEvent, Customer, JourneyChange
from heliograph.db import Database
from tests.utils.crm_world import days_ago, ev, ingest, make_programs
from tests.utils.db import rows

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(type_: str, n: int = 1, **kw: object) -> EventView:
    return EventView(id=n, type=type_, occurred_at=T0.replace(minute=n), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stage", "happened", "regular", "to", "rule"),
    [
        ("discovery", event("lesson_completed"), False, "exploration", "first_activity"),
        (
            "discovery",
            event("course_progress", progress=10),
            False,
            "exploration",
            "first_activity",
        ),
        ("discovery", event("community_post"), False, "exploration", "first_activity"),
        ("discovery", event("live_call_attended"), False, "exploration", "first_activity"),
        (
            "exploration",
            event("purchase", amount=Decimal("99")),
            False,
            "commitment",
            "first_purchase",
        ),
        (
            "discovery",
            event("purchase", amount=Decimal("99")),
            False,
            "commitment",
            "first_purchase",
        ),
        ("commitment", event("lesson_completed"), True, "engagement", "regular_activity"),
        ("commitment", event("course_progress", progress=100), True, "integration", "completion"),
        ("engagement", event("course_progress", progress=100), False, "integration", "completion"),
        ("integration", event("milestone_reported"), False, "transformation", "milestone"),
        ("commitment", event("milestone_reported"), False, "transformation", "milestone"),
        ("transformation", event("referral"), False, "advocacy", "referral"),
    ],
)
def test_each_rule_moves_the_customer_forward(
    stage: str, happened: EventView, regular: bool, to: str, rule: str
) -> None:
    (step,) = advance(stage, [happened], regular)
    assert (step.from_stage, step.to_stage, step.rule, step.event_id) == (stage, to, rule, 1)


@pytest.mark.parametrize(
    ("stage", "happened", "regular"),
    [
        ("discovery", event("live_call_attended", status="missed"), False),  # not attended
        ("discovery", event("purchase", amount=Decimal("0")), False),  # a free sign-up
        ("commitment", event("lesson_completed"), False),  # activity, but not regular yet
        ("exploration", event("lesson_completed"), True),  # regular, but never bought
        ("engagement", event("course_progress", progress=99), True),  # not complete
        ("advocacy", event("purchase", amount=Decimal("49")), False),  # never backwards
        ("integration", event("lesson_completed"), True),  # engagement is behind them
        ("commitment", event("support_ticket"), False),  # no rule for tickets
        ("discovery", event("refund", amount=Decimal("99")), False),
    ],
)
def test_events_without_a_forward_rule_change_nothing(
    stage: str, happened: EventView, regular: bool
) -> None:
    assert advance(stage, [happened], regular) == []


def test_a_batch_is_read_in_the_order_things_happened() -> None:
    later = EventView(2, "course_progress", T0.replace(hour=14), progress=100)
    earlier = EventView(1, "purchase", T0, amount=Decimal("99"))
    steps = advance("discovery", [later, earlier], regular_activity=False)
    assert [(s.to_stage, s.event_id) for s in steps] == [("commitment", 1), ("integration", 2)]


def test_the_rules_table_covers_every_stage_after_discovery() -> None:
    assert {r.to for r in JOURNEY_RULES} == set(JOURNEY_STAGES[1:])


async def test_events_move_the_journey_and_every_change_is_kept(database: Database) -> None:
    await make_programs(database)
    batch = [
        ev("lesson_completed", "j1", at=days_ago(30), program="mind-1"),
        ev("purchase", "j2", at=days_ago(20), program="mind-1", amount="99.00"),
        ev("lesson_completed", "j3", at=days_ago(5), program="mind-1"),
        ev("lesson_completed", "j4", at=days_ago(3), program="mind-1"),
        ev("course_progress", "j5", at=days_ago(1), program="mind-1", progress=60),
    ]
    result = await ingest(database, batch)
    assert (result.accepted, result.journey_changes) == (5, 3)
    (customer,) = await rows(database, Customer)
    assert customer.journey_stage == "engagement"
    changes = await rows(database, JourneyChange)
    keys = {e.id: e.idempotency_key for e in await rows(database, ActivityEvent)}
    assert [(c.from_stage, c.to_stage, c.rule, keys[c.cause_event_id]) for c in changes] == [
        ("discovery", "exploration", "first_activity", "j1"),
        ("exploration", "commitment", "first_purchase", "j2"),
        ("commitment", "engagement", "regular_activity", "j3"),
    ]
    assert abs((changes[1].at - days_ago(20)).total_seconds()) < 60  # when they bought

    replay = await ingest(database, batch)
    assert (replay.accepted, replay.duplicates, replay.journey_changes) == (0, 5, 0)
    assert len(await rows(database, JourneyChange)) == 3


async def test_the_journey_never_goes_backwards(sqlite_database: Database) -> None:
    await make_programs(sqlite_database)
    await ingest(sqlite_database, [ev("referral", "r1", referred_email="friend@example.com")])
    (customer,) = await rows(sqlite_database, Customer)
    assert customer.journey_stage == "advocacy"
    later = await ingest(
        sqlite_database,
        [
            ev("purchase", "r2", program="mind-1", amount="99"),
            ev("lesson_completed", "r3", program="mind-1"),
            ev("course_progress", "r4", program="mind-1", progress=100),
        ],
    )
    assert (later.accepted, later.journey_changes) == (3, 0)
    (customer,) = await rows(sqlite_database, Customer)
    assert customer.journey_stage == "advocacy"
    assert [c.to_stage for c in await rows(sqlite_database, JourneyChange)] == ["advocacy"]
