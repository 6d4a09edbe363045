"""A small team around the world, and helpers to route at a fixed instant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import Database
from inbox.ingest import AcceptResult
from inbox.models import Conversation
from routing import snapshot
from routing.assignment import Routed
from routing.models import Assignment, TeamMember
from routing.queue import route_conversation
from tests.utils.factories import make_member, receive

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def every_day(*periods: list[str]) -> dict[str, list[list[str]]]:
    return {day: [list(p) for p in periods] for day in WEEKDAYS}


def weekdays(*periods: list[str]) -> dict[str, list[list[str]]]:
    return {day: [list(p) for p in periods] for day in WEEKDAYS[:5]}


ALWAYS = every_day(["00:00", "24:00"])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


async def add_member(
    session: AsyncSession,
    name: str,
    timezone: str = "UTC",
    hours: dict[str, list[list[str]]] | None = None,
    languages: tuple[str, ...] = ("en",),
    expertise: tuple[str, ...] = (),
    capacity: int = 8,
    **kw: Any,
) -> TeamMember:
    return await make_member(
        session,
        name=name,
        email=f"{name.lower().replace(' ', '.')}@team.example",
        timezone=timezone,
        weekly_hours=ALWAYS if hours is None else hours,
        languages=list(languages),
        expertise=list(expertise),
        capacity=capacity,
        **kw,
    )


async def team(database: Database, *specs: dict[str, Any]) -> dict[str, int]:
    """Members from specs; returns ``{first name: id}``."""
    ids = {}
    async with database.session() as session:
        for spec in specs:
            member = await add_member(session, **spec)
            ids[member.name.split()[0]] = member.id
        await session.commit()
    snapshot.recheck()  # members added behind routing's back
    return ids  # type: ignore[return-value]


async def customer_writes(
    database: Database,
    message_id: str,
    sender: str = "cust-1",
    text: str = "hello",
    **profile: str,
) -> AcceptResult:
    return await receive(database, message_id, sender, text=text, **profile)


async def route(
    database: Database, result: AcceptResult, now: datetime, **kw: Any
) -> Routed | None:
    async with database.session() as session:
        routed = await route_conversation(
            session,
            result.conversation_id,
            message_id=result.message_id,
            now=now,
            **kw,
        )
        await session.commit()
    return routed


async def conversation(database: Database, conversation_id: int) -> Conversation:
    async with database.read_session() as session:
        return (
            await session.execute(select(Conversation).where(Conversation.id == conversation_id))
        ).scalar_one()


async def assignments(database: Database, conversation_id: int) -> list[Assignment]:
    async with database.read_session() as session:
        rows = await session.execute(
            select(Assignment)
            .where(Assignment.conversation_id == conversation_id)
            .order_by(Assignment.id)  # type: ignore[arg-type]
        )
        return list(rows.scalars().all())


async def give(database: Database, conversation_id: int, member_id: int, at: datetime) -> None:
    """Assign behind routing's back (test setup), and drop the cached team loads."""
    async with database.session() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(assignee_id=member_id, assigned_at=at)
        )
        await session.commit()
    snapshot.invalidate()
