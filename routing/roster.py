"""Who is on shift now, and a member's coming shifts (for the API and the chat surfaces)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytz
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import utcnow
from inbox.assignment import open_loads
from routing.models import TeamMember
from routing.policy import PolicyConfig, effective_availability
from routing.schedule import Shift, is_on_shift, shift_end_at, shifts_between
from routing.team import list_members


@dataclass(frozen=True)
class OnShift:
    member: TeamMember
    local_time: datetime  # in the member's zone
    availability: str  # effective: the inactivity rule applied
    load: int
    shift_ends_at: datetime | None


async def on_shift_report(session: AsyncSession, now: datetime | None = None) -> list[OnShift]:
    """Active members on shift at ``now`` with their local time, load and availability;
    earliest shift end first (who leaves next)."""
    now = now or utcnow()
    config = PolicyConfig.from_settings()
    loads = await open_loads(session)
    report = [
        OnShift(
            member,
            now.astimezone(pytz.timezone(member.timezone or "UTC")),
            effective_availability(member, now, config.idle_away_minutes),
            loads.get((member.id, ""), 0),  # type: ignore[arg-type]
            shift_end_at(member, now),
        )
        for member in await list_members(session)
        if member.active and is_on_shift(member, now)
    ]
    far = now + timedelta(days=3650)
    return sorted(report, key=lambda r: (r.shift_ends_at or far, r.member.id))


def coming_shifts(member: TeamMember, start: datetime, days: int = 7) -> list[Shift]:
    """The member's on-shift stretches from ``start`` for ``days`` days (a stretch already
    running at ``start`` included)."""
    return shifts_between(member, start, start + timedelta(days=days))
