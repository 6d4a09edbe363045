"""Shifts in each member's own time zone (pytz), as UTC intervals.

A member's week is ``{"mon": [["09:00", "13:00"], ["14:00", "18:00"]], ...}`` in local
wall-clock time. A period whose end is not after its start crosses midnight and belongs
to the day it starts (``["22:00", "06:00"]`` on Friday runs Friday 22:00 to Saturday
06:00); ``"24:00"`` ends at midnight. Dated exceptions replace a day's periods:
``{"date": "2026-12-25", "off": true}`` or ``{"date": "...", "hours": [["10:00", "14:00"]]}``
(which is also how an extra shift on a normally free day is written).

Daylight saving. Each period is localised on its own date, so a 09:00-17:00 shift is
09:00-17:00 local on both sides of a change. Local times the change skips or repeats
follow RFC 5545 section 3.3.5 (what calendars do):
- a time in the spring-forward gap uses the offset from before the gap, so 02:30 on the
  US change day is 03:30 daylight time (the shift keeps its length);
- a time the fall-back repeats means its first occurrence (still daylight time).
https://www.rfc-editor.org/rfc/rfc5545#section-3.3.5
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

import pytz

from routing.models import WEEKDAYS

log = logging.getLogger(__name__)

DAY_MINUTES = 24 * 60
# How far ahead a search for the next shift looks; a schedule with nothing in a year
# has no next shift.
HORIZON_DAYS = 366


class ScheduleError(ValueError):
    """A schedule cannot be read; the message names the field and the value."""


class Scheduled(Protocol):
    """What a schedule is built from (a TeamMember, or a test's stand-in)."""

    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    exceptions: list[dict[str, Any]]


@dataclass(frozen=True)
class Period:
    """Local minutes from the start of the day it belongs to; ``end`` may pass 1440."""

    start: int
    end: int


@dataclass(frozen=True)
class Shift:
    """One stretch on shift, in UTC, with the local date it belongs to."""

    start: datetime
    end: datetime
    local_date: date

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def _minutes(value: str) -> int:
    try:
        hours, minutes = value.split(":")
        total = int(hours) * 60 + int(minutes)
    except (AttributeError, ValueError) as exc:
        raise ScheduleError(f"{value!r} is not a time HH:MM") from exc
    if not 0 <= int(minutes) < 60 or not 0 <= total <= DAY_MINUTES:
        raise ScheduleError(f"{value!r} is not a time between 00:00 and 24:00")
    return total


def parse_periods(periods: Iterable[Sequence[str]]) -> tuple[Period, ...]:
    """``[["22:00", "06:00"]]`` -> periods; an end not after the start is the next day."""
    parsed: list[Period] = []
    for item in periods:
        if len(item) != 2:
            raise ScheduleError(f'a period is ["HH:MM", "HH:MM"], got {item!r}')
        start, end = _minutes(item[0]), _minutes(item[1])
        parsed.append(Period(start, end if end > start else end + DAY_MINUTES))
    return tuple(sorted(parsed, key=lambda p: p.start))


def parse_exceptions(entries: Iterable[dict[str, Any]]) -> dict[date, tuple[Period, ...]]:
    """Dated exceptions -> the periods that replace that day's (empty when off)."""
    days: dict[date, tuple[Period, ...]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "date" not in entry:
            raise ScheduleError(f'an exception needs a "date", got {entry!r}')
        try:
            day = date.fromisoformat(str(entry["date"]))
        except ValueError as exc:
            raise ScheduleError(f"exception date {entry['date']!r} is not YYYY-MM-DD") from exc
        if entry.get("off"):
            days[day] = ()
        elif "hours" in entry:
            days[day] = parse_periods(entry["hours"])
        else:
            raise ScheduleError(f'exception on {day}: give "off": true or "hours": [...]')
    return days


@dataclass(frozen=True)
class Schedule:
    timezone: str
    weekly: tuple[tuple[Period, ...], ...]  # Monday first
    exceptions: dict[date, tuple[Period, ...]]

    @property
    def tz(self) -> pytz.BaseTzInfo:
        return pytz.timezone(self.timezone)

    @property
    def empty(self) -> bool:
        return not any(self.weekly) and not any(self.exceptions.values())

    def periods_on(self, day: date) -> tuple[Period, ...]:
        """The periods that start on this local date."""
        if day in self.exceptions:
            return self.exceptions[day]
        return self.weekly[day.weekday()]

    def local_date(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def shifts_starting(self, first: date, days: int) -> Iterator[Shift]:
        """Periods starting on ``days`` local dates from ``first``, in UTC, in order."""
        tz = self.tz
        for offset in range(days):
            day = first + timedelta(days=offset)
            midnight = datetime(day.year, day.month, day.day)
            for period in self.periods_on(day):
                start = to_utc(tz, midnight + timedelta(minutes=period.start))
                end = to_utc(tz, midnight + timedelta(minutes=period.end))
                if end > start:  # a period inside a skipped hour can vanish
                    yield Shift(start, end, day)

    def stretches(self, first: date, days: int) -> list[Shift]:
        """Shifts merged where one ends as (or after) the next starts."""
        merged: list[Shift] = []
        for shift in self.shifts_starting(first, days):
            if merged and shift.start <= merged[-1].end:
                last = merged[-1]
                merged[-1] = Shift(last.start, max(last.end, shift.end), last.local_date)
            else:
                merged.append(shift)
        return merged


def to_utc(tz: pytz.BaseTzInfo, local: datetime) -> datetime:
    """A naive local wall-clock time -> aware UTC, DST gaps and repeats per RFC 5545."""
    try:
        return tz.localize(local, is_dst=None).astimezone(UTC)
    except pytz.NonExistentTimeError:
        # Offset from before the gap = the later of the two readings.
        return max(_both(tz, local))
    except pytz.AmbiguousTimeError:
        # First occurrence = the earlier of the two readings.
        return min(_both(tz, local))


def _both(tz: pytz.BaseTzInfo, local: datetime) -> tuple[datetime, datetime]:
    return (
        tz.localize(local, is_dst=True).astimezone(UTC),
        tz.localize(local, is_dst=False).astimezone(UTC),
    )


@lru_cache(maxsize=4096)
def _compile(timezone: str, weekly_json: str, exceptions_json: str) -> Schedule:
    if timezone not in pytz.all_timezones_set:
        raise ScheduleError(f"unknown IANA time zone {timezone!r}")
    weekly_hours = json.loads(weekly_json)
    unknown = set(weekly_hours) - set(WEEKDAYS)
    if unknown:
        raise ScheduleError(f"unknown day {sorted(unknown)[0]!r}; use {', '.join(WEEKDAYS)}")
    weekly = tuple(parse_periods(weekly_hours.get(day, [])) for day in WEEKDAYS)
    return Schedule(timezone, weekly, parse_exceptions(json.loads(exceptions_json)))


def schedule_of(member: Scheduled) -> Schedule:
    """The member's compiled schedule (cached by content).

    A schedule that cannot be read counts as no shifts (logged), so one bad entry never
    stops routing for the whole team; the team file's validation reports it on import.
    """
    try:
        return _compile(
            member.timezone or "UTC",
            json.dumps(member.weekly_hours or {}, sort_keys=True),
            json.dumps(member.exceptions or [], sort_keys=True),
        )
    except (ScheduleError, TypeError, ValueError) as exc:
        log.warning("schedule of %s ignored: %s", getattr(member, "email", member), exc)
        return Schedule("UTC", ((),) * 7, {})


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous here; pass an aware (UTC) time")
    return at.astimezone(UTC)


def current_shift(member: Scheduled, at: datetime) -> Shift | None:
    """The merged on-shift stretch containing ``at``, or None when off shift."""
    at = _aware(at)
    schedule = schedule_of(member)
    if schedule.empty:
        return None
    # A period may start up to two local days earlier ("24:00"-"24:00" reaches day +2).
    first = schedule.local_date(at) - timedelta(days=2)
    for days in (10, 40, HORIZON_DAYS):
        for stretch in schedule.stretches(first, days):
            if stretch.start > at:
                return None
            if stretch.contains(at):
                # Periods of later days start at their local midnight or after: a stretch
                # ending before the window's last midnight cannot go on past the window.
                if stretch.end < _midnight(schedule, first + timedelta(days=days)):
                    return stretch
                break
        else:
            return None
    return stretch  # on shift for a year without a break: the year's end is its end


def _midnight(schedule: Schedule, day: date) -> datetime:
    return to_utc(schedule.tz, datetime(day.year, day.month, day.day))


def is_on_shift(member: Scheduled, at: datetime) -> bool:
    at = _aware(at)
    schedule = schedule_of(member)
    if schedule.empty:
        return False
    first = schedule.local_date(at) - timedelta(days=2)
    return any(s.contains(at) for s in schedule.shifts_starting(first, 3))


def shift_window(member: Scheduled, at: datetime) -> tuple[bool, datetime]:
    """``(on shift at at, until)``: the answer holds for every instant in ``[at, until)``.

    Cheap (four local days of periods), for callers that keep the answer for a while.
    """
    at = _aware(at)
    schedule = schedule_of(member)
    # Shifts starting two local days on begin at least ~23 h after ``at``; 12 h is safe.
    until = at + timedelta(hours=12)
    if schedule.empty:
        return False, until
    on = False
    first = schedule.local_date(at) - timedelta(days=2)
    for shift in schedule.shifts_starting(first, 4):
        on = on or shift.contains(at)
        for edge in (shift.start, shift.end):
            if at < edge < until:
                until = edge
    return on, until


def shift_end_at(member: Scheduled, at: datetime) -> datetime | None:
    """When the stretch on shift that contains ``at`` ends (periods that touch are one
    stretch: 09:00-13:00 + 13:00-17:00 ends at 17:00). None when off shift at ``at``."""
    stretch = current_shift(member, at)
    return None if stretch is None else stretch.end


def next_shift_start(member: Scheduled, after: datetime) -> datetime | None:
    """The first start of an on-shift stretch strictly after ``after``; a stretch already
    running at ``after`` does not count. None: no shift in the next year."""
    after = _aware(after)
    schedule = schedule_of(member)
    if schedule.empty:
        return None
    # From two days back, so the stretch running at ``after`` is seen whole, not restarted.
    first = schedule.local_date(after) - timedelta(days=2)
    for days in (16, HORIZON_DAYS + 3):
        for stretch in schedule.stretches(first, days):
            if stretch.start > after:
                return stretch.start
    return None


def shifts_between(member: Scheduled, start: datetime, end: datetime) -> list[Shift]:
    """On-shift stretches overlapping ``[start, end)``, merged, clipped to nothing."""
    start, end = _aware(start), _aware(end)
    schedule = schedule_of(member)
    if schedule.empty:
        return []
    first = schedule.local_date(start) - timedelta(days=2)
    days = (end - start).days + 5
    return [s for s in schedule.stretches(first, days) if s.end > start and s.start < end]


def local_time(member: Scheduled, at: datetime) -> datetime:
    return _aware(at).astimezone(pytz.timezone(member.timezone or "UTC"))


class Skilled(Scheduled, Protocol):
    languages: list[str]
    expertise: list[str]


def on_shift_now(members: Iterable[Scheduled], at: datetime) -> list[Any]:
    """The members on shift at ``at`` (schedule only; availability is the policy's)."""
    return [m for m in members if is_on_shift(m, at)]


def base_language(code: str | None) -> str | None:
    """``"pt-BR"`` -> ``"pt"``: a speaker of a language serves its regional variants."""
    if not code:
        return None
    return code.strip().lower().replace("_", "-").split("-")[0] or None


def speaks(member: Skilled, language: str | None) -> bool:
    wanted = base_language(language)
    return wanted is None or wanted in {base_language(x) for x in member.languages}


def knows(member: Skilled, expertise: str | Iterable[str] | None) -> bool:
    """Knows one of the tags (no tags asked: true)."""
    if expertise is None:
        return True
    tags = {expertise} if isinstance(expertise, str) else set(expertise)
    return not tags or bool(tags & {x.lower() for x in member.expertise})


def next_start_for(
    members: Iterable[Skilled],
    after: datetime,
    language: str | None = None,
    expertise: str | Iterable[str] | None = None,
) -> tuple[datetime, Any] | None:
    """When the next shift starts for someone who speaks ``language`` and knows
    ``expertise`` (one of the tags): ``(start, member)``, earliest first; None if nobody."""
    best: tuple[datetime, Any] | None = None
    for member in members:
        if not (speaks(member, language) and knows(member, expertise)):
            continue
        start = next_shift_start(member, after)
        if start is not None and (best is None or start < best[0]):
            best = (start, member)
    return best
