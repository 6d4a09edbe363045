"""A process-wide picture of the team and its load, so one decision reads little.

A decision with 1,000 members cannot read and parse 1,000 rows each time. The snapshot
keeps them as ``MemberView`` objects, with each member's on-shift answer cached until
their next shift boundary, and the open load per member from one GROUP BY.

Staying correct with several processes:
- team changes: every decision reads ``count(*), max(updated_at)`` of the team (one
  cheap scan) and rebuilds the members when it moved; whatever changes a member's
  profile, schedule or availability bumps ``updated_at``;
- loads are refreshed every ``routing_snapshot_ttl_s``, at every queue drain, and moved
  by this process's own assignments; other processes' assignments make them stale, so
  the policy only uses them to rank. The hard rules are checked again on the chosen
  member's locked row with an exact count (``assignment.confirm``) before anything is
  written: a stale snapshot can cost a second try, never an over-capacity assignment.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.settings import get_settings
from inbox.assignment import open_loads
from routing.models import TeamMember
from routing.policy import (
    Choice,
    MemberView,
    PolicyConfig,
    Wanted,
    answers_customers,
    choose,
    eligible_load,
)


class TeamSnapshot:
    def __init__(self, members: list[MemberView], version: tuple[object, ...]) -> None:
        self.members = {m.id: m for m in members}
        self.version = version
        self.loads: dict[tuple[int, str], int] = {}
        self.loads_at = float("-inf")  # time.monotonic() of the last GROUP BY
        self.checked_at = float("-inf")  # time.monotonic() of the last version check
        self.per_channel = False
        self._duty: list[MemberView] = []
        self._speakers: dict[str, list[MemberView]] = {}
        self._duty_from: datetime | None = None
        self._duty_until: datetime | None = None

    def on_duty(self, now: datetime) -> list[MemberView]:
        """Active members who answer customers and are on shift at ``now``, kept until
        the first member's next shift boundary."""
        if self._duty_from is None or not self._duty_from <= now < self._duty_until:  # type: ignore[operator]
            duty: list[MemberView] = []
            until = now + timedelta(hours=12)
            for member in self.members.values():
                if not member.active or not answers_customers(member):
                    continue
                if member.on_shift(now):
                    duty.append(member)
                until = min(until, member.valid_until(now))
            self._duty, self._duty_from, self._duty_until = duty, now, until
            speakers: dict[str, list[MemberView]] = {}
            for member in duty:
                for language in member.speaks:
                    speakers.setdefault(language, []).append(member)
            self._speakers = speakers
        return self._duty

    def choose(self, wanted: Wanted, now: datetime, config: PolicyConfig) -> Choice | None:
        """``policy.choose`` over the members on duty, without scoring all of them: the
        previous agent if eligible, else the best speaker of the language, else the best
        of everyone (the same answer, as the preferences are ranked in that order)."""
        duty = self.on_duty(now)
        previous = self.members.get(wanted.previous_member_id)  # type: ignore[arg-type]
        if (
            previous is not None
            and eligible_load(previous, wanted, now, self.load, config) is not None
        ):
            return choose([previous], wanted, now, self.load, config)
        if wanted.language is not None:
            found = choose(self._speakers.get(wanted.language, []), wanted, now, self.load, config)
            if found is not None or config.require_language:
                return found
        return choose(duty, wanted, now, self.load, config)

    def load(self, member_id: int, channel: str = "") -> int:
        return self.loads.get((member_id, channel), 0)

    def set_load(self, member_id: int, channel: str, value: int) -> None:
        self.loads[(member_id, channel)] = max(value, 0)

    def moved(self, to_id: int | None, from_id: int | None, channel: str) -> None:
        """This process moved one conversation from ``from_id`` to ``to_id``."""
        key_channel = channel if self.per_channel else ""
        if to_id == from_id:
            return
        if to_id is not None:
            self.set_load(to_id, key_channel, self.load(to_id, key_channel) + 1)
        if from_id is not None:
            self.set_load(from_id, key_channel, self.load(from_id, key_channel) - 1)


_snapshots: dict[str, TeamSnapshot] = {}


def invalidate() -> None:
    """Forget every cached snapshot (tests; bulk changes made behind routing's back)."""
    _snapshots.clear()


def recheck() -> None:
    """Compare the team's version at the next decision (this process changed a member)."""
    for snapshot in _snapshots.values():
        snapshot.checked_at = float("-inf")


async def _team_version(session: AsyncSession) -> tuple[object, ...]:
    row = (await session.execute(select(func.count(), func.max(TeamMember.updated_at)))).one()
    return tuple(row)


async def team_snapshot(
    session: AsyncSession, config: PolicyConfig, *, refresh_loads: bool = False
) -> TeamSnapshot:
    """This process's snapshot of the database behind ``session``, brought up to date:
    the team's version is compared at most every ``routing_team_check_s`` (a change
    made in this process asks for it at once, see ``recheck``)."""
    settings = get_settings()
    key = str(session.bind.url) if session.bind is not None else ""
    snapshot = _snapshots.get(key)
    clock = time.monotonic()
    if (
        snapshot is None
        or refresh_loads
        or clock - snapshot.checked_at >= settings.routing_team_check_s
    ):
        version = await _team_version(session)
        if snapshot is None or snapshot.version != version:
            rows = await session.execute(select(TeamMember).where(TeamMember.active.is_(True)))  # type: ignore[attr-defined]
            fresh = TeamSnapshot([MemberView.of(m) for m in rows.scalars().all()], version)
            if snapshot is not None:
                fresh.loads, fresh.loads_at = snapshot.loads, snapshot.loads_at
                fresh.per_channel = snapshot.per_channel
            snapshot = _snapshots[key] = fresh
        snapshot.checked_at = clock
    if (
        refresh_loads
        or snapshot.per_channel != config.per_channel
        or clock - snapshot.loads_at > settings.routing_snapshot_ttl_s
    ):
        snapshot.loads = await open_loads(session, config.per_channel)
        snapshot.loads_at = time.monotonic()
        snapshot.per_channel = config.per_channel
    return snapshot
