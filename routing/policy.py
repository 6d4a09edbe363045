"""The assignment policy: who is eligible, who is preferred, and the reason in words.

Eligible: a member who answers customers (``answers_customers``), on shift now in their
own time zone, available (online, and not idle past ``routing_idle_away_minutes``),
active, and under capacity. Hard requirements
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
from heliograph.texts import Text
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
    wait_notice_window_minutes: float = 60.0
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
            wait_notice_window_minutes=s.routing_wait_notice_window_minutes,
            vip_priority=s.routing_vip_priority,
        )


ANSWERING_ROLES = frozenset({"agent"})


def answers_customers(member: Any) -> bool:
    """Whether the router may give ``member`` conversations: the member's own
    ``answers_customers`` when set, else their role's default (agents yes; exec and admin
    no; leads no, unless the team file's ``routing: {leads_answer_customers: true}``,
    which ``routing.team`` writes into each lead's own flag). The one rule every path
    (single, batch, queue promise, handoff, manual assignment) asks."""
    flag = getattr(member, "answers_customers", None)
    if flag is not None:
        return bool(flag)
    return member.role in ANSWERING_ROLES


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
    answers_customers: bool | None = None  # None: the role decides (``answers_customers``)
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
            answers_customers=member.answers_customers,
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
        parts: list[str] = [f"{m.city} {local:%H:%M}"]
        if self.relationship:
            parts.append(Text("the customer's previous agent"))
        if wanted.language:
            lang = wanted.language
            parts.append(
                Text("speaks %(lang)s", lang=lang)
                if self.speaks
                else Text("does not speak %(lang)s", lang=lang)
            )
        if self.knows:
            parts.append(Text("knows %(tags)s", tags=list(self.knows)))
        elif wanted.tags:
            parts.append(Text("knows none of %(tags)s", tags=sorted(wanted.tags)))
        load, capacity = self.load, m.capacity
        if per_channel and wanted.channel:
            on = wanted.channel
            parts.append(
                Text(
                    "%(load)s/%(capacity)s open on %(channel)s",
                    load=load,
                    capacity=capacity,
                    channel=on,
                )
            )
        else:
            parts.append(Text("%(load)s/%(capacity)s open", load=load, capacity=capacity))
        return Text("%(name)s — %(parts)s", name=m.name, parts=parts)


LoadOf = Callable[[int, str], int]


def eligible_load(
    member: MemberView, wanted: Wanted, now: datetime, load_of: LoadOf, config: PolicyConfig
) -> int | None:
    """The member's load if they may take the conversation now, else None."""
    if member.id in wanted.exclude or not member.active or not answers_customers(member):
        return None
    if not member.on_shift(now):
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


@dataclass(frozen=True)
class NobodyFree:
    """Why nobody could take a conversation: ``kind`` for the customer's wait notice,
    ``str()`` in words for the queue and the assignment history.

    Kinds: "off_shift" (nobody who answers customers is on shift), "language" / "expertise"
    (on shift, but nobody who meets the hard requirement), "away" (those who could are
    away or offline), "capacity" (those who could are full), "other".
    """

    kind: str
    language: str | None = None
    tags: tuple[str, ...] = ()
    qualified: bool = False  # a hard requirement narrowed who "everyone on shift" means

    def __str__(self) -> str:
        return str(self.text())

    def text(self) -> Text:
        """``str()`` as a ``Text`` (heliograph.texts): the web app shows it translated."""
        lang, tags = self.language, list(self.tags)
        if self.kind == "off_shift":
            return Text("nobody is on shift")
        if self.kind == "language":
            return Text("nobody free on shift speaks %(lang)s", lang=lang)
        if self.kind == "expertise":
            return Text("nobody free on shift knows %(tags)s", tags=tags)
        if self.kind not in ("away", "capacity"):
            return Text("nobody is eligible")
        qualified_by = (
            "language" if self.qualified and lang else "tags" if self.qualified and tags else ""
        )
        if self.kind == "away":
            if qualified_by == "language":
                return Text("everyone on shift who speaks %(lang)s is away or offline", lang=lang)
            if qualified_by == "tags":
                return Text("everyone on shift who knows %(tags)s is away or offline", tags=tags)
            return Text("everyone on shift is away or offline")
        if qualified_by == "language":
            return Text("everyone on shift who speaks %(lang)s is at capacity", lang=lang)
        if qualified_by == "tags":
            return Text("everyone on shift who knows %(tags)s is at capacity", tags=tags)
        return Text("everyone on shift is at capacity")


def nobody_free(
    members: Iterable[MemberView],
    wanted: Wanted,
    now: datetime,
    load_of: LoadOf,
    config: PolicyConfig,
) -> NobodyFree:
    """Why ``choose`` found nobody: the first of the policy's filters that left nobody,
    hard requirements before availability and load (a full English-speaking shift is
    not why a Japanese customer waits when nobody on shift speaks Japanese)."""
    on_shift = [
        m
        for m in members
        if m.active and m.id not in wanted.exclude and answers_customers(m) and m.on_shift(now)
    ]
    if not on_shift:
        return NobodyFree("off_shift")
    language = wanted.language if config.require_language else None
    tags = tuple(sorted(wanted.tags)) if config.require_expertise else ()
    if language:
        on_shift = [m for m in on_shift if language in m.speaks]
        if not on_shift:
            return NobodyFree("language", language=language)
    if tags:
        on_shift = [m for m in on_shift if wanted.tags & m.knows]
        if not on_shift:
            return NobodyFree("expertise", language=language, tags=tags)
    qualified = bool(language or tags)
    online = [
        m for m in on_shift if effective_availability(m, now, config.idle_away_minutes) == "online"
    ]
    if not online:
        return NobodyFree("away", language, tags, qualified)
    channel = wanted.channel if config.per_channel else ""
    if all(load_of(m.id, channel) >= m.capacity for m in online):
        return NobodyFree("capacity", language, tags, qualified)
    return NobodyFree("other", language, tags, qualified)


def why_nobody(
    members: Iterable[MemberView],
    wanted: Wanted,
    now: datetime,
    load_of: LoadOf,
    config: PolicyConfig,
) -> str:
    """Why ``choose`` found nobody, in words for the queue (``nobody_free``), as a ``Text``."""
    return nobody_free(members, wanted, now, load_of, config).text()
