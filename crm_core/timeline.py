"""The CRM's part of a customer's timeline: activity events, journey changes, interventions.

The timeline itself is the inbox's (inbox/timeline.py); this returns plain entries the
inbox merges with messages and notes (inbox/interventions.py registers it there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import ActivityEvent, Intervention, JourneyChange, Program
from heliograph.texts import Text, load

# An event's type and a journey stage inside a summary (the web app translates them).
EVENT_WORDS = {
    "course_progress": Text("course progress"),
    "lesson_completed": Text("lesson completed"),
    "live_call_attended": Text("live call attended"),
    "purchase": Text("purchase"),
    "refund": Text("refund"),
    "community_post": Text("community post"),
    "support_ticket": Text("support ticket"),
    "milestone_reported": Text("milestone reported"),
    "referral": Text("referral"),
}
STAGE_WORDS = {
    "discovery": Text("discovery"),
    "exploration": Text("exploration"),
    "commitment": Text("commitment"),
    "engagement": Text("engagement"),
    "integration": Text("integration"),
    "transformation": Text("transformation"),
    "advocacy": Text("advocacy"),
}


@dataclass(frozen=True)
class CrmEntry:
    at: datetime
    kind: str  # event.<type>, journey.<to_stage>, intervention.<state>
    summary: str
    data: dict[str, Any]


def _event_summary(e: ActivityEvent, program: str | None) -> str:
    what = EVENT_WORDS.get(e.type) or e.type.replace("_", " ")
    parts: list[str] = []
    if program:
        parts.append(program)
    if e.progress is not None:
        parts.append(f"{e.progress}%")
    if e.amount is not None:
        parts.append(f"{e.amount} {e.currency or ''}".strip())
    if e.ref:
        parts.append(e.ref)
    if e.status:
        parts.append(e.status)
    return what + "".join(" · " + p for p in parts)


async def crm_entries(
    session: AsyncSession, customer_id: int, before: datetime | None, limit: int
) -> list[CrmEntry]:
    """Up to ``limit`` entries of each kind older than ``before``, newest first."""

    def older(column: Any) -> Any:
        return column < before if before is not None else column.is_not(None)

    names = dict((await session.execute(select(Program.id, Program.name))).all())  # type: ignore[call-overload]
    entries: list[CrmEntry] = []
    events = await session.execute(
        select(ActivityEvent)
        .where(ActivityEvent.customer_id == customer_id, older(ActivityEvent.occurred_at))
        .order_by(ActivityEvent.occurred_at.desc())  # type: ignore[attr-defined]
        .limit(limit)
    )
    for e in events.scalars():
        entries.append(
            CrmEntry(
                e.occurred_at,
                f"event.{e.type}",
                _event_summary(e, names.get(e.program_id)),
                {"event_id": e.id, "program_id": e.program_id},
            )
        )
    changes = await session.execute(
        select(JourneyChange)
        .where(JourneyChange.customer_id == customer_id, older(JourneyChange.at))
        .order_by(JourneyChange.at.desc())  # type: ignore[attr-defined]
        .limit(limit)
    )
    for c in changes.scalars():
        entries.append(
            CrmEntry(
                c.at,
                f"journey.{c.to_stage}",
                Text(
                    "%(before)s -> %(after)s (%(rule)s)",
                    before=STAGE_WORDS.get(c.from_stage, c.from_stage),
                    after=STAGE_WORDS.get(c.to_stage, c.to_stage),
                    rule=c.rule,
                ),
                {
                    "from": c.from_stage,
                    "to": c.to_stage,
                    "rule": c.rule,
                    "event_id": c.cause_event_id,
                },
            )
        )
    opened = await session.execute(
        select(Intervention)
        .where(Intervention.customer_id == customer_id, older(Intervention.created_at))
        .order_by(Intervention.created_at.desc())  # type: ignore[attr-defined]
        .limit(limit)
    )
    for i in opened.scalars():
        entries.append(
            CrmEntry(
                i.created_at,
                f"intervention.{i.rule}",
                load(i.reason_text, i.reason) or "",
                {
                    "intervention_id": i.id,
                    "state": i.state,
                    "owner_id": i.owner_id,
                    "send_status": i.send_status,
                },
            )
        )
    return entries
