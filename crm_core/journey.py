"""The seven journey stages, advanced by activity events under the rules below.

A customer only ever moves forward automatically: an event whose rule points at the
stage they are in, or one behind it, changes nothing. A step may skip stages (a first
purchase from Discovery goes straight to Commitment). Every change is kept as a
JourneyChange with the rule and the event that caused it.

The rules (``JOURNEY_RULES`` below is the table; docs/crm.md shows it too):
- first_activity -> exploration: a first lesson_completed, course_progress, attended
  live_call_attended or community_post.
- first_purchase -> commitment: a purchase above 0.
- regular_activity -> engagement: course activity on 3+ days in the last 14, once at
  commitment or later.
- completion -> integration: course_progress or lesson_completed reaching 100%.
- milestone -> transformation: a milestone_reported.
- referral -> advocacy: a referral.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import JOURNEY_STAGES, Customer, JourneyChange
from heliograph.bulk import update_rows

REGULAR_ACTIVE_DAYS = 3  # within the last 14 days
STAGE_INDEX = {stage: i for i, stage in enumerate(JOURNEY_STAGES)}


@dataclass(frozen=True)
class EventView:
    """The parts of an activity event the rules look at."""

    id: int
    type: str
    occurred_at: datetime
    progress: int | None = None
    amount: Decimal | None = None
    status: str | None = None


@dataclass(frozen=True)
class JourneyRule:
    name: str
    events: tuple[str, ...]
    to: str
    condition: str  # in words, for the API and docs/crm.md
    test: Callable[[EventView], bool] = lambda _: True
    at_least: str | None = None  # the stage the customer must have reached already
    regular: bool = False  # needs regular activity (REGULAR_ACTIVE_DAYS in 14)


def _attended(e: EventView) -> bool:
    return e.type != "live_call_attended" or e.status != "missed"


JOURNEY_RULES: tuple[JourneyRule, ...] = (
    JourneyRule(
        "first_activity",
        ("lesson_completed", "course_progress", "live_call_attended", "community_post"),
        "exploration",
        "a first lesson, course progress, attended live call or community post",
        _attended,
    ),
    JourneyRule(
        "first_purchase",
        ("purchase",),
        "commitment",
        "a purchase above 0",
        lambda e: (e.amount or 0) > 0,
    ),
    JourneyRule(
        "regular_activity",
        ("lesson_completed", "course_progress", "live_call_attended"),
        "engagement",
        f"course activity on {REGULAR_ACTIVE_DAYS}+ days within 14, after committing",
        _attended,
        at_least="commitment",
        regular=True,
    ),
    JourneyRule(
        "completion",
        ("course_progress", "lesson_completed"),
        "integration",
        "a program completed (progress reaches 100%)",
        lambda e: (e.progress or 0) >= 100,
    ),
    JourneyRule("milestone", ("milestone_reported",), "transformation", "a milestone reported"),
    JourneyRule("referral", ("referral",), "advocacy", "a referral of someone new"),
)


@dataclass(frozen=True)
class Step:
    from_stage: str
    to_stage: str
    rule: str
    event_id: int
    at: datetime


def advance(stage: str, events: list[EventView], regular_activity: bool) -> list[Step]:
    """The steps ``events`` (in the order they happened) move a customer at ``stage``."""
    steps: list[Step] = []
    current = STAGE_INDEX.get(stage, 0)
    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        best: JourneyRule | None = None
        for rule in JOURNEY_RULES:
            if event.type not in rule.events or not rule.test(event):
                continue
            if rule.regular and not regular_activity:
                continue
            if rule.at_least and current < STAGE_INDEX[rule.at_least]:
                continue
            if STAGE_INDEX[rule.to] > max(current, STAGE_INDEX[best.to] if best else -1):
                best = rule
        if best is not None:
            steps.append(
                Step(JOURNEY_STAGES[current], best.to, best.name, event.id, event.occurred_at)
            )
            current = STAGE_INDEX[best.to]
    return steps


async def apply_events(
    session: AsyncSession,
    stages: dict[int, str],
    events: dict[int, list[EventView]],
    active_days_14: dict[int, int],
) -> int:
    """Advance many customers at once: one insert of changes, one update of stages."""
    changes: list[dict[str, Any]] = []
    new_stage: dict[int, str] = {}
    for customer_id, customer_events in events.items():
        regular = active_days_14.get(customer_id, 0) >= REGULAR_ACTIVE_DAYS
        for step in advance(stages.get(customer_id, "discovery"), customer_events, regular):
            changes.append(
                {
                    "customer_id": customer_id,
                    "from_stage": step.from_stage,
                    "to_stage": step.to_stage,
                    "rule": step.rule,
                    "cause_event_id": step.event_id,
                    "at": step.at,
                }
            )
            new_stage[customer_id] = step.to_stage
    if changes:
        await session.execute(insert(JourneyChange.__table__), changes)  # type: ignore[attr-defined]
        await update_rows(
            session,
            Customer.__table__,  # type: ignore[attr-defined]
            [{"id": cid, "journey_stage": s} for cid, s in new_stage.items()],
        )
    return len(changes)


async def journey_of(session: AsyncSession, customer_id: int) -> list[JourneyChange]:
    rows = await session.execute(
        select(JourneyChange)
        .where(JourneyChange.customer_id == customer_id)
        .order_by(JourneyChange.at, JourneyChange.id)
    )
    return list(rows.scalars().all())


def rules_table() -> list[dict[str, Any]]:
    return [
        {"rule": r.name, "events": list(r.events), "condition": r.condition, "to": r.to}
        for r in JOURNEY_RULES
    ]
