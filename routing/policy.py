"""The assignment policy: who is eligible, who is preferred, and the reason in words.

Eligible: on shift now in their own time zone, available (online, and not idle past
``routing_idle_away_minutes``), active, and under capacity. Hard requirements
(``routing_require``: "language", "expertise") also filter. Among the eligible, prefer
in this order: the customer's previous agent, language match, expertise match (more
matching tags first), lowest load (open / capacity, then open), longest idle
(``last_assigned_at``, never first), lowest id.

Pure functions over ``MemberView`` (a team snapshot's row), so the same code runs in
the route job, the queue drain, the API, the benchmark and the property tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytz

from heliograph.settings import Settings, get_settings
from routing.schedule import base_language, shift_window

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PolicyConfig:
    require_language: bool = False
    require_expertise: bool = False
    per_channel: bool = False
    idle_away_minutes: float = 0.0
    unanswered_minutes: dict[str, float] = field(default_factory=dict)
    away_on_missed: bool = True
    wait_notice: bool = True
    vip_priority: str = "high"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PolicyConfig:
        s = settings or get_settings()  # validated there: a bad value stops the start
        return cls(
            require_language="language" in s.routing_require,
            require_expertise="expertise" in s.routing_require,
            per_channel=s.routing_capacity_per_channel,
            idle_away_minutes=s.routing_idle_away_minutes,
            unanswered_minutes=dict(s.routing_unanswered_minutes),
            away_on_missed=s.routing_away_on_missed,
            wait_notice=s.routing_wait_notice,
            vip_priority=s.routing_vip_priority,
        )


def city_of(timezone: str) -> str:
    """``"America/Argentina/Buenos_Aires"`` -> ``"Buenos Aires"``."""
    return timezone.rsplit("/", 1)[-1].replace("_", " ")


@dataclass(eq=False)
class MemberView:
    """What the policy needs of a team member, with their shift state kept until it can
    change (``shift_window``)."""

    id: int
    name: str
    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    exceptions: list[dict[str, Any]]
    languages: list[str]
    expertise: list[str]
    capacity: int
    availability: str = "online"
    active: bool = True
    last_assigned_at: datetime | None = None
    last_active_at: datetime | None = None
    role: str = "agent"
    updated_at: datetime | None = None  # the row's, to tell whether this copy is current
    # derived
    speaks: frozenset[str] = frozenset()
    knows: frozenset[str] = frozenset()
    city: str = ""
    _on: bool = False
    _from: datetime = _NEVER
    _until: datetime = _NEVER

    def __post_init__(self) -> None:
        self.speaks = frozenset(b for b in (base_language(x) for x in self.languages) if b)
        self.knows = frozenset(x.lower() for x in self.expertise)
        self.city = city_of(self.timezone)

    @classmethod
    def of(cls, member: Any) -> MemberView:
        return cls(
            id=member.id,
            name=member.name,
            timezone=member.timezone or "UTC",
            weekly_hours=member.weekly_hours or {},
            exceptions=member.exceptions or [],
            languages=list(member.languages or []),
            expertise=list(member.expertise or []),
            capacity=member.capacity,
            availability=member.availability,
            active=member.active,
            last_assigned_at=member.last_assigned_at,
            last_active_at=member.last_active_at,
            role=member.role,
            updated_at=member.updated_at,
        )

    def on_shift(self, now: datetime) -> bool:
        if not self._from <= now < self._until:
            self._on, self._until = shift_window(self, now)
            self._from = now
        return self._on

    def valid_until(self, now: datetime) -> datetime:
        self.on_shift(now)
        return self._until


def effective_availability(member: Any, now: datetime, idle_away_minutes: float = 0) -> str:
    """The member's own setting, except that online but idle too long reads as away."""
    if member.availability != "online":
        return str(member.availability)
    last = member.last_active_at
    if idle_away_minutes and last is not None and now - last > timedelta(minutes=idle_away_minutes):
        return "away"
    return "online"


@dataclass(frozen=True)
class Wanted:
    """What a conversation asks of its agent."""

    channel: str = ""
    language: str | None = None  # base language, e.g. "pt"
    tags: frozenset[str] = frozenset()
    previous_member_id: int | None = None  # relationship
    current_assignee_id: int | None = None  # its load already counts this conversation
    exclude: frozenset[int] = frozenset()

    @classmethod
    def build(
        cls,
        channel: str,
        language: str | None,
        tags: Iterable[str],
        previous_member_id: int | None = None,
        current_assignee_id: int | None = None,
        exclude: Iterable[int] = (),
    ) -> Wanted:
        return cls(
            channel,
            base_language(language),
            frozenset(t.lower() for t in tags),
            previous_member_id,
            current_assignee_id,
            frozenset(exclude),
        )


@dataclass(frozen=True)
class Choice:
    member: MemberView
    load: int  # open conversations before this one
    relationship: bool
    speaks: bool
    knows: tuple[str, ...]

    def reason(self, wanted: Wanted, now: datetime, per_channel: bool = False) -> str:
        """``"Aiko Tanaka — Tokyo 09:14, speaks ja, knows billing, 2/8 open"``."""
        m = self.member
        local = now.astimezone(pytz.timezone(m.timezone))
        parts = [f"{m.city} {local:%H:%M}"]
        if self.relationship:
            parts.append("the customer's previous agent")
        if wanted.language:
            parts.append(
                f"speaks {wanted.language}" if self.speaks else f"does not speak {wanted.language}"
            )
        if self.knows:
            parts.append("knows " + ", ".join(self.knows))
        elif wanted.tags:
            parts.append("knows none of " + ", ".join(sorted(wanted.tags)))
        on = f" on {wanted.channel}" if per_channel and wanted.channel else ""
        parts.append(f"{self.load}/{m.capacity} open{on}")
        return f"{m.name} — " + ", ".join(parts)


LoadOf = Callable[[int, str], int]


def eligible_load(
    member: MemberView, wanted: Wanted, now: datetime, load_of: LoadOf, config: PolicyConfig
) -> int | None:
    """The member's load if they may take the conversation now, else None."""
    if member.id in wanted.exclude or not member.active or not member.on_shift(now):
        return None
    if effective_availability(member, now, config.idle_away_minutes) != "online":
        return None
    load = load_of(member.id, wanted.channel if config.per_channel else "")
    if member.id == wanted.current_assignee_id:
        load = max(load - 1, 0)
    if load >= member.capacity:
        return None
    if config.require_language and wanted.language and wanted.language not in member.speaks:
        return None
    if config.require_expertise and wanted.tags and not wanted.tags & member.knows:
        return None
    return load


def choose(
    members: Iterable[MemberView],
    wanted: Wanted,
    now: datetime,
    load_of: LoadOf,
    config: PolicyConfig,
) -> Choice | None:
    """The best eligible member for ``wanted`` at ``now``; None when nobody is eligible."""
    best_key: tuple[Any, ...] | None = None
    best: tuple[MemberView, int] | None = None
    for member in members:
        load = eligible_load(member, wanted, now, load_of, config)
        if load is None:
            continue
        key = (
            member.id != wanted.previous_member_id,
            wanted.language is not None and wanted.language not in member.speaks,
            -len(wanted.tags & member.knows),
            load / member.capacity,
            load,
            member.last_assigned_at or _NEVER,
            member.id,
        )
        if best_key is None or key < best_key:
            best_key, best = key, (member, load)
    if best is None:
        return None
    member, load = best
    return Choice(
        member,
        load,
        relationship=member.id == wanted.previous_member_id,
        speaks=wanted.language is None or wanted.language in member.speaks,
        knows=tuple(sorted(wanted.tags & member.knows)),
    )


def why_nobody(
    members: Iterable[MemberView],
    wanted: Wanted,
    now: datetime,
    load_of: LoadOf,
    config: PolicyConfig,
) -> str:
    """Why ``choose`` found nobody, in words for the queue."""
    on_shift = [m for m in members if m.active and m.id not in wanted.exclude and m.on_shift(now)]
    if not on_shift:
        return "nobody is on shift"
    online = [
        m for m in on_shift if effective_availability(m, now, config.idle_away_minutes) == "online"
    ]
    if not online:
        return "everyone on shift is away or offline"
    channel = wanted.channel if config.per_channel else ""
    free = [m for m in online if load_of(m.id, channel) < m.capacity]
    if not free:
        return "everyone on shift is at capacity"
    if config.require_language and wanted.language:
        free = [m for m in free if wanted.language in m.speaks]
        if not free:
            return f"nobody free on shift speaks {wanted.language}"
    if config.require_expertise and wanted.tags:
        return f"nobody free on shift knows {', '.join(sorted(wanted.tags))}"
    return "nobody is eligible"
