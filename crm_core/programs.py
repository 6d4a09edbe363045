"""Programs (soul, mind, body, relationships) and customers' enrollments in them.

Enrollments are kept by the activity events (crm_core.events): a purchase opens one,
progress and lessons move it, a completion (progress 100%) closes it, a refund ends it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import PROGRAM_CATEGORIES, Enrollment, Program

_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ProgramError(ValueError):
    """A program cannot be created or changed as asked (the message says why)."""


class ProgramNotFound(LookupError):
    pass


def _check(values: dict[str, Any]) -> None:
    code = values.get("code")
    if code is not None and not _CODE.match(code):
        raise ProgramError(
            f"code {code!r} must be lower-case letters, digits, '.', '_' or '-' (max 64)"
        )
    category = values.get("category")
    if category is not None and category not in PROGRAM_CATEGORIES:
        raise ProgramError(f"category must be one of {', '.join(PROGRAM_CATEGORIES)}")
    price = values.get("price")
    if price is not None and Decimal(price) < 0:
        raise ProgramError("price cannot be negative")


async def create_program(session: AsyncSession, **values: Any) -> Program:
    _check(values)
    if values.get("code") is None or values.get("category") is None:
        raise ProgramError("a program needs a code and a category")
    existing = await session.execute(select(Program.id).where(Program.code == values["code"]))
    if existing.first() is not None:
        raise ProgramError(f"a program with code {values['code']!r} exists already")
    if values.get("next_program_id") is not None:
        await get_program(session, values["next_program_id"])
    program = Program(**values)
    session.add(program)
    await session.flush()
    return program


async def update_program(session: AsyncSession, program_id: int, **values: Any) -> Program:
    _check(values)
    program = await get_program(session, program_id)
    if values.get("next_program_id") == program_id:
        raise ProgramError("a program cannot be its own next program")
    if values.get("next_program_id") is not None:
        await get_program(session, values["next_program_id"])
    for field, value in values.items():
        setattr(program, field, value)
    await session.flush()
    return program


async def get_program(session: AsyncSession, program_id: int) -> Program:
    program = await session.get(Program, program_id)
    if program is None:
        raise ProgramNotFound(f"program {program_id} does not exist")
    return program


async def list_programs(session: AsyncSession) -> list[Program]:
    rows = await session.execute(select(Program).order_by(Program.category, Program.level))
    return list(rows.scalars().all())


async def programs_by_code(session: AsyncSession) -> dict[str, Program]:
    return {p.code: p for p in await list_programs(session)}


def suggest_next(
    completed: Program, programs: Iterable[Program], taken: set[int]
) -> Program | None:
    """The program to suggest after ``completed``: its declared next program, else the
    next level up in the same category, else the cheapest active program in the
    category; never one the customer has already taken."""
    candidates = [p for p in programs if p.active and p.id not in taken and p.id != completed.id]
    declared = next((p for p in candidates if p.id == completed.next_program_id), None)
    if declared is not None:
        return declared
    same = [p for p in candidates if p.category == completed.category]
    higher = sorted((p for p in same if p.level > completed.level), key=lambda p: p.level)
    if higher:
        return higher[0]
    return min(same, key=lambda p: (p.price, p.id or 0), default=None)


async def enrollments_of(session: AsyncSession, customer_id: int) -> list[Enrollment]:
    rows = await session.execute(
        select(Enrollment).where(Enrollment.customer_id == customer_id).order_by(Enrollment.id)
    )
    return list(rows.scalars().all())


async def program_tags(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, list[str]]:
    """Topic tags for routing, by customer, in one query: the categories and codes of their
    active enrollments (customers with none left out; ``routing.topics.program_tag_sources``
    holds it)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Enrollment.customer_id, Program.category, Program.code)  # type: ignore[call-overload]
        .join(Enrollment, Enrollment.program_id == Program.id)
        .where(Enrollment.customer_id.in_(ids), Enrollment.status == "active")  # type: ignore[attr-defined]
        .order_by(Enrollment.customer_id, Enrollment.id)
    )
    found: dict[int, list[str]] = {}
    for customer_id, category, code in rows.all():
        tags = found.setdefault(customer_id, [])
        for tag in (category, code):
            if tag not in tags:
                tags.append(tag)
    return found
