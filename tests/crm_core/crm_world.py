"""Shared set-up for the CRM tests: programs, events, and reading rows back."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from crm_core import events, interventions, programs
from crm_core.events import IngestResult
from crm_core.interventions import PassResult
from crm_core.models import Program
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


async def rows(database: Database, model: Any, *where: Any) -> list[Any]:
    async with database.read_session() as session:
        stmt = select(model).where(*where).order_by(*model.__table__.primary_key.columns)
        return list((await session.execute(stmt)).scalars().all())


async def count(database: Database, model: Any, *where: Any) -> int:
    async with database.read_session() as session:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(stmt)).scalar_one())
