"""Routing's tables as other packages read them: the team's names and regions, and the
assignment history. Batch reads take lists of ids (one query whatever their number);
``member_name`` is a column expression another owner's query embeds, so "the assignee's
name" costs no second query and nobody else spells ``team_member``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from routing.models import Assignment, TeamMember


def member_name(member_id: Any) -> Any:
    """The name of the member whose id is the column ``member_id`` (NULL: none)."""
    return select(TeamMember.name).where(TeamMember.id == member_id).scalar_subquery()


async def member_names(session: AsyncSession, member_ids: Iterable[int]) -> dict[int, str]:
    ids = set(member_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(TeamMember.id, TeamMember.name).where(TeamMember.id.in_(ids))  # type: ignore[union-attr, call-overload]
    )
    return dict(rows.all())  # type: ignore[arg-type]


async def member_regions(session: AsyncSession, member_ids: Iterable[int]) -> dict[int, str | None]:
    ids = set(member_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(TeamMember.id, TeamMember.region).where(TeamMember.id.in_(ids))  # type: ignore[union-attr, call-overload]
    )
    return dict(rows.all())  # type: ignore[arg-type]


async def customer_assignments(
    session: AsyncSession, customer_id: int, before: datetime | None, limit: int
) -> list[Assignment]:
    """A customer's assignments, newest first (``before``: older than that instant)."""
    stmt = select(Assignment).where(Assignment.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(Assignment.at < before)  # type: ignore[operator]
    rows = await session.execute(stmt.order_by(Assignment.at.desc()).limit(limit))  # type: ignore[attr-defined]
    return list(rows.scalars().all())


async def assignments_of_customers(
    session: AsyncSession, customer_ids: list[int]
) -> list[Assignment]:
    """Every assignment of these customers, oldest first (the GDPR export)."""
    rows = await session.execute(
        select(Assignment).where(Assignment.customer_id.in_(customer_ids)).order_by(Assignment.id)  # type: ignore[attr-defined, arg-type]
    )
    return list(rows.scalars().all())


async def member(session: AsyncSession, member_id: int | None) -> TeamMember | None:
    """The member with this id, active or not (None: no id, or no such member)."""
    return await session.get(TeamMember, member_id) if member_id else None


async def member_by_slack_id(session: AsyncSession, slack_user_id: str) -> TeamMember | None:
    found = await session.execute(
        select(TeamMember).where(TeamMember.slack_user_id == slack_user_id)  # type: ignore[arg-type]
    )
    return found.scalar_one_or_none()


async def member_of_chat(session: AsyncSession, chat_id: str) -> TeamMember | None:
    """The member a Telegram chat is linked to, active or not."""
    found = await session.execute(
        select(TeamMember).where(TeamMember.telegram_chat_id == chat_id)  # type: ignore[arg-type]
    )
    return found.scalar()


async def member_by_email_any_case(session: AsyncSession, email: str) -> TeamMember | None:
    """The member whose email is ``email``, compared in lower case (None: none)."""
    found = await session.execute(
        select(TeamMember).where(func.lower(TeamMember.email) == email.lower())  # type: ignore[arg-type]
    )
    return found.scalar_one_or_none()


async def anyone_on_telegram(session: AsyncSession) -> bool:
    """Whether any active member has linked a Telegram chat (the team's Telegram surface
    has somebody to tell)."""
    query = (
        select(TeamMember.id)
        .where(TeamMember.active.is_(True), TeamMember.telegram_chat_id.is_not(None))  # type: ignore[attr-defined,union-attr]
        .limit(1)
    )
    return (await session.execute(query)).first() is not None


async def active_members(
    session: AsyncSession, roles: Iterable[str] | None = None
) -> list[TeamMember]:
    """The active members (with one of ``roles``, if given), by id."""
    query = select(TeamMember).where(TeamMember.active.is_(True))  # type: ignore[attr-defined]
    if roles is not None:
        query = query.where(TeamMember.role.in_(tuple(roles)))  # type: ignore[attr-defined]
    rows = await session.execute(query.order_by(TeamMember.id))  # type: ignore[arg-type]
    return list(rows.scalars().all())
