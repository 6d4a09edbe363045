"""When two profiles are merged, their CRM history follows: a merge hook.

Activity events and journey changes move as they are. An enrollment in a program both
profiles have is folded into the surviving one (furthest progress, earliest start); an
intervention whose cause the survivor already has goes. The survivor's stage becomes
the further of the two (recorded as a journey change by rule ``merge``), and its scores
and lifetime value are recomputed from the combined events.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import identity, scores
from crm_core.journey import STAGE_INDEX
from crm_core.models import (
    ActivityEvent,
    Customer,
    CustomerScore,
    Enrollment,
    Intervention,
    JourneyChange,
)
from heliograph.db import utcnow


async def _fold_enrollments(session: AsyncSession, source_id: int, target_id: int) -> int:
    rows = await session.execute(
        select(Enrollment).where(Enrollment.customer_id.in_((source_id, target_id)))  # type: ignore[attr-defined]
    )
    every = list(rows.scalars())
    mine = {e.program_id: e for e in every if e.customer_id == target_id}
    theirs = [e for e in every if e.customer_id == source_id]
    moved = 0
    for e in theirs:
        keep = mine.get(e.program_id)
        if keep is None:
            e.customer_id = target_id
            moved += 1
            continue
        keep.progress = max(keep.progress, e.progress)
        keep.started_at = min(keep.started_at, e.started_at)
        keep.milestones = [*keep.milestones, *e.milestones]
        keep.completed_at = keep.completed_at or e.completed_at
        if keep.status != "completed" and e.status == "completed":
            keep.status = "completed"
        await session.delete(e)
    await session.flush()
    return moved


async def _move_interventions(session: AsyncSession, source_id: int, target_id: int) -> int:
    i = Intervention
    existing = {
        (rule, cause)
        for rule, cause in (
            await session.execute(select(i.rule, i.cause_key).where(i.customer_id == target_id))  # type: ignore[call-overload]
        ).all()
    }
    moved = 0
    for found in (await session.execute(select(i).where(i.customer_id == source_id))).scalars():
        if (found.rule, found.cause_key) in existing:
            await session.delete(found)  # the survivor has this cause already
        else:
            found.customer_id = target_id
            moved += 1
    await session.flush()
    return moved


async def move_crm(session: AsyncSession, source_id: int, target_id: int) -> dict[str, int]:
    moved = {
        "enrollments": await _fold_enrollments(session, source_id, target_id),
        "interventions": await _move_interventions(session, source_id, target_id),
    }
    for model in (ActivityEvent, JourneyChange):
        result = await session.execute(
            update(model).where(model.customer_id == source_id).values(customer_id=target_id)  # type: ignore[attr-defined]
        )
        moved[model.__tablename__] = int(result.rowcount)  # type: ignore[attr-defined]
    await session.execute(delete(CustomerScore).where(CustomerScore.customer_id == source_id))
    source = await session.get(Customer, source_id)
    target = await session.get(Customer, target_id)
    if (
        source
        and target
        and STAGE_INDEX.get(source.journey_stage, 0) > STAGE_INDEX.get(target.journey_stage, 0)
    ):
        await session.execute(
            insert(JourneyChange.__table__),  # type: ignore[attr-defined]
            [
                {
                    "customer_id": target_id,
                    "from_stage": target.journey_stage,
                    "to_stage": source.journey_stage,
                    "rule": "merge",
                    "at": utcnow(),
                }
            ],
        )
        target.journey_stage = source.journey_stage
    await session.flush()
    if moved["activity_event"] and source and target:
        # The source's purchases now count in the target's lifetime value: recompute it,
        # and zero the source's so merge_customers does not add it a second time.
        await scores.recompute(session, [target_id])
        await session.refresh(target)
        source.lifetime_value = 0  # type: ignore[assignment]
    return moved


identity.merge_hooks.append(move_crm)
