"""Shifts in each member's own time zone: DST on both sides, gaps, overnight, exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.schedule import (
    current_shift,
    is_on_shift,
    next_shift_start,
    next_start_for,
    on_shift_now,
    shift_end_at,
    shift_window,
    shifts_between,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class M:
    """A team member as far as schedules go."""

    name: str
    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    expertise: list[str] = field(default_factory=list)


def every_day(*periods: list[str]) -> dict[str, list[list[str]]]:
    return {day: [list(p) for p in periods] for day in WEEKDAYS}


def weekdays(*periods: list[str]) -> dict[str, list[list[str]]]:
    return {day: [list(p) for p in periods] for day in WEEKDAYS[:5]}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


LONDON = M("Oliver", "Europe/London", every_day(["09:00", "17:00"]))
NEW_YORK = M("Maya", "America/New_York", every_day(["09:00", "17:00"]))


# --- a day shift keeps its local hours across DST -----------------------------------------


@pytest.mark.parametrize(
    ("at", "on"),
    [
        # Europe springs forward on Sunday 29 March 2026: 09:00 GMT before, 09:00 BST after.
        (utc(2026, 3, 28, 8, 59), False),
        (utc(2026, 3, 28, 9, 0), True),
        (utc(2026, 3, 28, 16, 59), True),
        (utc(2026, 3, 28, 17, 0), False),
        (utc(2026, 3, 29, 7, 59), False),  # 08:59 BST on the change day
        (utc(2026, 3, 29, 8, 0), True),  # 09:00 BST
        (utc(2026, 3, 30, 15, 59), True),  # 16:59 BST
        (utc(2026, 3, 30, 16, 0), False),  # 17:00 BST
        # ... and falls back on Sunday 25 October 2026.
        (utc(2026, 10, 24, 8, 0), True),  # 09:00 BST
        (utc(2026, 10, 24, 16, 0), False),  # 17:00 BST
        (utc(2026, 10, 25, 8, 30), False),  # 08:30 GMT on the change day
        (utc(2026, 10, 25, 9, 0), True),
        (utc(2026, 10, 26, 16, 59), True),
        (utc(2026, 10, 26, 17, 0), False),
    ],
)
def test_a_london_day_shift_is_nine_to_five_local_on_both_sides_of_dst(
    at: datetime, on: bool
) -> None:
    assert is_on_shift(LONDON, at) is on


@pytest.mark.parametrize(
    ("at", "on"),
    [
        # The US springs forward on Sunday 8 March 2026 (EST -5 -> EDT -4) ...
        (utc(2026, 3, 7, 13, 59), False),
        (utc(2026, 3, 7, 14, 0), True),  # 09:00 EST
        (utc(2026, 3, 8, 13, 0), True),  # 09:00 EDT on the change day
        (utc(2026, 3, 8, 12, 59), False),
        (utc(2026, 3, 9, 20, 59), True),  # 16:59 EDT
        (utc(2026, 3, 9, 21, 0), False),
        # ... and falls back on Sunday 1 November 2026.
        (utc(2026, 10, 31, 13, 0), True),  # 09:00 EDT
        (utc(2026, 11, 1, 13, 30), False),  # 08:30 EST
        (utc(2026, 11, 1, 14, 0), True),  # 09:00 EST
        (utc(2026, 11, 2, 21, 59), True),
        (utc(2026, 11, 2, 22, 0), False),
    ],
)
def test_a_new_york_day_shift_follows_us_dst(at: datetime, on: bool) -> None:
    assert is_on_shift(NEW_YORK, at) is on


def test_between_the_us_and_eu_changes_the_gap_between_london_and_new_york_is_four_hours() -> None:
    # Monday 16 March 2026: New York is on EDT already, London still on GMT.
    at = utc(2026, 3, 16, 13, 0)
    assert is_on_shift(NEW_YORK, at) and is_on_shift(LONDON, at)
    assert shift_end_at(LONDON, at) == utc(2026, 3, 16, 17, 0)
    assert shift_end_at(NEW_YORK, at) == utc(2026, 3, 16, 21, 0)


# --- local times that do not exist or happen twice (RFC 5545) ------------------------------


def test_a_start_in_the_spring_forward_gap_uses_the_offset_from_before_the_gap() -> None:
    # 02:30 does not exist in New York on 8 March 2026; read with EST it is 07:30Z,
    # which the clocks show as 03:30 EDT. The shift keeps its length (until 05:00 EDT).
    early = M("E", "America/New_York", {"sun": [["02:30", "05:00"]]})
    [shift] = shifts_between(early, utc(2026, 3, 8), utc(2026, 3, 9))
    assert (shift.start, shift.end) == (utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 9, 0))
    # London's gap is 01:00-02:00 on 29 March: 01:30 reads as 01:30 GMT = 02:30 BST.
    night = M("N", "Europe/London", {"sun": [["01:30", "06:00"]]})
    assert next_shift_start(night, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)


def test_a_time_the_fall_back_repeats_means_its_first_occurrence() -> None:
    # 01:30 happens twice in New York on 1 November 2026; the first one is EDT (05:30Z).
    # The shift to 03:00 EST (08:00Z) so lasts two and a half hours, repeated hour included.
    early = M("E", "America/New_York", {"sun": [["01:30", "03:00"]]})
    [shift] = shifts_between(early, utc(2026, 11, 1), utc(2026, 11, 2))
    assert (shift.start, shift.end) == (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8, 0))


def test_an_overnight_shift_over_a_dst_change_ends_at_local_six() -> None:
    owl = M("Owl", "Europe/London", {"sat": [["22:00", "06:00"]]})
    # Saturday 28 March 22:00 GMT to Sunday 29 March 06:00 BST: seven hours.
    assert shift_end_at(owl, utc(2026, 3, 28, 23)) == utc(2026, 3, 29, 5, 0)
    # Saturday 24 October 22:00 BST to Sunday 25 October 06:00 GMT: nine hours.
    assert next_shift_start(owl, utc(2026, 10, 24, 12)) == utc(2026, 10, 24, 21, 0)
    assert shift_end_at(owl, utc(2026, 10, 24, 21, 0)) == utc(2026, 10, 25, 6, 0)


# --- overnight shifts, several periods, exceptions ------------------------------------------


MOSCOW_OWL = M("Dmitri", "Europe/Moscow", {"fri": [["22:00", "06:00"]]})


def test_an_overnight_shift_crosses_midnight_and_belongs_to_the_day_it_starts() -> None:
    # Friday 5 June 2026 22:00 MSK (19:00Z) to Saturday 06:00 MSK (03:00Z).
    assert not is_on_shift(MOSCOW_OWL, utc(2026, 6, 5, 18, 59))
    assert is_on_shift(MOSCOW_OWL, utc(2026, 6, 5, 19, 0))
    assert is_on_shift(MOSCOW_OWL, utc(2026, 6, 5, 22, 30))  # Saturday 01:30 MSK
    assert shift_end_at(MOSCOW_OWL, utc(2026, 6, 5, 22, 30)) == utc(2026, 6, 6, 3, 0)
    assert not is_on_shift(MOSCOW_OWL, utc(2026, 6, 6, 3, 0))
    # Friday off: the night is gone. Saturday off: the night still runs into Saturday.
    friday_off = M(
        "D", "Europe/Moscow", MOSCOW_OWL.weekly_hours, [{"date": "2026-06-05", "off": True}]
    )
    saturday_off = M(
        "D", "Europe/Moscow", MOSCOW_OWL.weekly_hours, [{"date": "2026-06-06", "off": True}]
    )
    assert not is_on_shift(friday_off, utc(2026, 6, 5, 22, 30))
    assert is_on_shift(saturday_off, utc(2026, 6, 5, 22, 30))


def test_touching_periods_are_one_stretch_and_a_lunch_break_is_not() -> None:
    split = M("S", "Asia/Tokyo", {"mon": [["09:00", "13:00"], ["13:00", "18:00"]]})
    lunch = M("L", "Asia/Tokyo", {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]})
    ten = utc(2026, 6, 8, 1, 0)  # Monday 10:00 JST
    assert shift_end_at(split, ten) == utc(2026, 6, 8, 9, 0)  # 18:00 JST
    assert shift_end_at(lunch, ten) == utc(2026, 6, 8, 3, 0)  # 12:00 JST
    assert not is_on_shift(lunch, utc(2026, 6, 8, 3, 30))
    assert next_shift_start(lunch, utc(2026, 6, 8, 3, 30)) == utc(2026, 6, 8, 4, 0)
    # A running stretch is not "next": from 10:00 the next start is 13:00 (lunch) ...
    assert next_shift_start(lunch, ten) == utc(2026, 6, 8, 4, 0)
    # ... and for the unbroken day, next Monday 09:00.
    assert next_shift_start(split, ten) == utc(2026, 6, 15, 0, 0)


def test_stretches_merge_across_midnight_and_24_00_ends_the_day() -> None:
    late = M("Late", "UTC", {"mon": [["18:00", "24:00"]], "tue": [["00:00", "06:00"]]})
    assert shift_end_at(late, utc(2026, 6, 8, 20)) == utc(2026, 6, 9, 6)
    assert current_shift(late, utc(2026, 6, 9, 5)).start == utc(2026, 6, 8, 18)  # type: ignore[union-attr]


def test_exceptions_day_off_replacement_hours_and_an_extra_shift() -> None:
    member = M(
        "Aiko",
        "Asia/Tokyo",
        weekdays(["09:00", "18:00"]),
        [
            {"date": "2026-06-09", "off": True},  # Tuesday off
            {"date": "2026-06-10", "hours": [["13:00", "15:00"]]},  # Wednesday short
            {"date": "2026-06-13", "hours": [["10:00", "12:00"]]},  # Saturday extra
        ],
    )
    assert is_on_shift(member, utc(2026, 6, 8, 1))  # Monday 10:00 JST
    assert not is_on_shift(member, utc(2026, 6, 9, 1))  # Tuesday 10:00, off
    assert not is_on_shift(member, utc(2026, 6, 10, 1))  # Wednesday 10:00
    assert is_on_shift(member, utc(2026, 6, 10, 4, 30))  # Wednesday 13:30
    assert next_shift_start(member, utc(2026, 6, 8, 10)) == utc(2026, 6, 10, 4)  # Wed 13:00
    assert is_on_shift(member, utc(2026, 6, 13, 2))  # Saturday 11:00
    assert next_shift_start(member, utc(2026, 6, 12, 10)) == utc(2026, 6, 13, 1)  # Sat 10:00


def test_nobody_without_hours_is_ever_on_shift() -> None:
    idle = M("Idle", "UTC", {})
    assert not is_on_shift(idle, utc(2026, 6, 8, 12))
    assert next_shift_start(idle, utc(2026, 6, 8, 12)) is None
    assert shift_end_at(idle, utc(2026, 6, 8, 12)) is None


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        is_on_shift(LONDON, datetime(2026, 6, 8, 12))


def test_who_is_on_shift_and_when_the_next_pt_billing_shift_starts() -> None:
    team = [
        M(
            "Aiko",
            "Asia/Tokyo",
            weekdays(["09:00", "18:00"]),
            languages=["ja", "en"],
            expertise=["billing"],
        ),
        M(
            "Joao",
            "America/Sao_Paulo",
            weekdays(["09:00", "17:00"]),
            languages=["pt-BR"],
            expertise=["technical"],
        ),
        M(
            "Ines",
            "Europe/Lisbon",
            weekdays(["10:00", "18:00"]),
            languages=["pt", "en"],
            expertise=["billing"],
        ),
    ]
    friday_evening = utc(2026, 6, 12, 20)  # Lisbon 21:00, Sao Paulo 17:00, Tokyo Sat 05:00
    assert on_shift_now(team, friday_evening) == []
    start, who = next_start_for(team, friday_evening, language="pt", expertise="billing")  # type: ignore[misc]
    assert who.name == "Ines" and start == utc(2026, 6, 15, 9)  # Monday 10:00 WEST
    start, who = next_start_for(team, friday_evening, language="pt-PT")  # type: ignore[misc]
    assert who.name == "Ines"
    start, who = next_start_for(team, friday_evening, expertise=["technical"])  # type: ignore[misc]
    assert who.name == "Joao" and start == utc(2026, 6, 15, 12)  # Monday 09:00 BRT
    assert next_start_for(team, friday_evening, language="ru") is None
    monday = utc(2026, 6, 15, 12, 30)
    assert [m.name for m in on_shift_now(team, monday)] == ["Joao", "Ines"]


# --- properties over random schedules --------------------------------------------------------

ZONES = [
    "Europe/London",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",  # southern hemisphere DST
    "Asia/Kolkata",  # half-hour offset
    "America/Sao_Paulo",
    "Europe/Moscow",
    "Pacific/Chatham",  # +12:45 with DST
]
times = st.integers(0, 96).map(lambda q: f"{q * 15 // 60:02d}:{q * 15 % 60:02d}")
periods = st.lists(st.tuples(times, times).map(list), max_size=3)
schedules = st.builds(
    M,
    name=st.just("R"),
    timezone=st.sampled_from(ZONES),
    weekly_hours=st.dictionaries(st.sampled_from(WEEKDAYS), periods, max_size=7),
    exceptions=st.lists(
        st.builds(
            lambda day, hours: {
                "date": f"2026-03-{day:02d}",
                **({"hours": hours} if hours else {"off": True}),
            },
            st.integers(20, 31),
            periods,
        ),
        max_size=3,
        unique_by=lambda e: e["date"],
    ),
)
# Around the March and October/November changes, where mistakes live.
instants = st.one_of(
    st.datetimes(datetime(2026, 3, 20), datetime(2026, 4, 6)),
    st.datetimes(datetime(2026, 10, 20), datetime(2026, 11, 6)),
).map(lambda d: d.replace(tzinfo=UTC))
EPS = timedelta(microseconds=1)


@settings(max_examples=150, deadline=None)
@given(schedules, instants)
def test_shift_end_is_where_the_stretch_stops(member: M, at: datetime) -> None:
    end = shift_end_at(member, at)
    assert (end is not None) == is_on_shift(member, at)
    if end is not None:
        assert end > at
        assert is_on_shift(member, end - EPS)
        assert not is_on_shift(member, end) or end - at > timedelta(days=300)


@settings(max_examples=150, deadline=None)
@given(schedules, instants, st.floats(0, 1))
def test_next_start_is_a_start_and_nothing_starts_before_it(
    member: M, at: datetime, fraction: float
) -> None:
    start = next_shift_start(member, at)
    if start is None:
        return
    assert start > at
    assert is_on_shift(member, start) and not is_on_shift(member, start - EPS)
    between = at + (start - at) * fraction
    if not is_on_shift(member, at) and between < start:
        assert not is_on_shift(member, between)


@settings(max_examples=150, deadline=None)
@given(schedules, instants, st.floats(0, 1))
def test_a_shift_window_holds_until_its_end(member: M, at: datetime, fraction: float) -> None:
    on, until = shift_window(member, at)
    assert until > at and on == is_on_shift(member, at)
    assert is_on_shift(member, at + (until - at) * fraction * 0.999999) == on
