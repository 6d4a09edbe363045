"""Shared set-up for the CRM tests: programs, events, and reading rows back."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from crm_core import events, interventions, programs
from crm_core.events import IngestResult
from crm_core.interventions import PassResult
from crm_core.models import InterventionRule, Program
from heliograph.db import Database, utcnow

API = "/api/v1"


async def make_programs(database: Database) -> dict[str, Program]:
    """Two mind programs (1 -> 2) and a body program."""
    async with database.session() as session:
        found = {}
        found["mind-1"] = await programs.create_program(
            session,
            code="mind-1",
            name="Mindful Mornings",
            category="mind",
            price=99,
            instructor="Dr. Hana Sato",
        )
        found["mind-2"] = await programs.create_program(
            session, code="mind-2", name="Mindful Mastery", category="mind", price=249, level=2
        )
        found["body-1"] = await programs.create_program(
            session, code="body-1", name="Strong Foundations", category="body", price=79
        )
        await session.commit()
    return found


def ev(
    type_: str, key: str, who: str | int = "ana@example.com", at: datetime | None = None, **kw: Any
) -> dict[str, Any]:
    """An event as a platform sends it; ``who`` is an email, a phone (+...) or an id."""
    if isinstance(who, int):
        customer: dict[str, Any] = {"id": who}
    elif who.startswith("+"):
        customer = {"phone": who}
    else:
        customer = {"email": who}
    body: dict[str, Any] = {"type": type_, "idempotency_key": key, "customer": customer, **kw}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    return body


def days_ago(days: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(days=days)


async def ingest(
    database: Database, batch: list[dict[str, Any]], now: datetime | None = None
) -> IngestResult:
    return await database.run_session(functools.partial(events.ingest, raw_events=batch, now=now))


async def evaluate(database: Database, now: datetime | None = None) -> PassResult:
    return await database.run_session(functools.partial(interventions.evaluate, now=now))


async def store_bad_row(database: Database) -> None:
    """A row written before the ranges were checked (as an old version let an admin do)."""
    async with database.session() as session:
        session.add(
            InterventionRule(
                name="inactivity_nudge",
                enabled=True,
                auto_send=False,
                params={"days": 10**12, "max_days": 30},
                message="",
            )
        )
        await session.commit()


async def two_causes(database: Database) -> None:
    """Ana has been quiet for ten days (inactivity); Ben reached a milestone."""
    await make_programs(database)
    await ingest(
        database,
        [
            ev("purchase", "p", at=days_ago(40), program="mind-1", amount="99"),
            ev("lesson_completed", "l", at=days_ago(10), program="mind-1"),
            ev("milestone_reported", "m", "ben@example.com", milestone="first month"),
        ],
    )
    async with database.session() as session:  # the event path fired the milestone: forget it
        await session.execute(text("DELETE FROM intervention"))
        await session.execute(text("DELETE FROM job"))
        await session.commit()
