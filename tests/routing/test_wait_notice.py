"""The wait notice says why the customer waits and when we answer, in their time zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox.models import Message
from routing.models import RoutingWait
from tests.utils.routing_world import (
    ALWAYS,
    customer_writes,
    give,
    route,
    team,
    utc,
    weekdays,
)

MONDAY_NOON = utc(2026, 6, 8, 12, 0)  # 21:00 in Tokyo, 08:00 in New York
ENGLISH_SHIFT = (
    {"name": "Ann", "hours": ALWAYS},
    {"name": "Ben", "hours": ALWAYS},
    {"name": "Cat", "hours": ALWAYS},
)
# Aiko starts at 08:20 in Tokyo: 23:20 UTC the day before.
AIKO = {
    "name": "Aiko",
    "timezone": "Asia/Tokyo",
    "hours": weekdays(["08:20", "17:00"]),
    "languages": ("ja", "en"),
}


@pytest.fixture
def require_language(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HELIOGRAPH_ROUTING_REQUIRE", '["language"]')
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


async def _notices(database: Database) -> list[str]:
    async with database.read_session() as session:
        rows = await session.execute(
            select(Message.text).where(Message.author_type == "system").order_by(Message.id)
        )
        return list(rows.scalars().all())


async def test_nobody_who_speaks_the_language_while_three_agents_are_on_shift(
    sqlite_database: Database, require_language: None
) -> None:
    await team(sqlite_database, *ENGLISH_SHIFT, AIKO)
    sent = await customer_writes(
        sqlite_database, "m1", text="こんにちは", language="ja", timezone="America/New_York"
    )
    routed = await route(sqlite_database, sent, MONDAY_NOON)
    assert routed is not None and routed.member_id is None
    assert routed.reason == "nobody free on shift speaks ja"
    # Aiko's Tuesday starts at 23:20 UTC on Monday: 19:20 the same day in New York.
    assert await _notices(sqlite_database) == [
        "Thanks for your message. Nobody who speaks Japanese is on shift right now; "
        "we'll answer at 19:20 your time."
    ]
    async with sqlite_database.read_session() as session:
        wait = await session.get(RoutingWait, sent.conversation_id)
    assert wait is not None and wait.promised_at == utc(2026, 6, 8, 23, 20)


async def test_everyone_on_shift_at_capacity_is_said_without_a_made_up_time(
    sqlite_database: Database,
) -> None:
    ids = await team(
        sqlite_database,
        {"name": "Solo", "hours": ALWAYS, "capacity": 1},
        {"name": "Later", "hours": weekdays(["18:00", "20:00"])},
    )
    busy = await customer_writes(sqlite_database, "m0", "c0")
    await give(sqlite_database, busy.conversation_id, ids["Solo"], MONDAY_NOON)
    sent = await customer_writes(sqlite_database, "m1", "c1", timezone="Europe/Berlin")
    routed = await route(sqlite_database, sent, MONDAY_NOON)
    assert routed is not None and routed.reason == "everyone on shift is at capacity"
    assert await _notices(sqlite_database) == [
        "Thanks for your message. Everyone on shift is helping other customers right now; "
        "we'll answer as soon as someone is free."
    ]
    # Writing again in the same wait is not told twice.
    again = await customer_writes(sqlite_database, "m2", "c1", timezone="Europe/Berlin")
    await route(sqlite_database, again, MONDAY_NOON + timedelta(minutes=5))
    assert len(await _notices(sqlite_database)) == 1


async def test_nobody_on_shift_gives_the_next_start_in_the_customers_zone(
    sqlite_database: Database,
) -> None:
    # An exec with hours is on shift, but does not answer customers: the team is offline.
    await team(
        sqlite_database,
        {"name": "Cara Exec", "role": "exec", "hours": ALWAYS},
        {"name": "Oliver", "timezone": "Europe/London", "hours": weekdays(["09:00", "17:00"])},
    )
    sunday_night = utc(2026, 6, 7, 22, 0)  # 23:00 in London, Monday 00:00 in Berlin
    sent = await customer_writes(sqlite_database, "m1", "c1", timezone="Europe/Berlin")
    routed = await route(sqlite_database, sent, sunday_night)
    assert routed is not None and routed.reason == "nobody is on shift"
    # Oliver starts Monday 09:00 BST = 08:00 UTC = 10:00 in Berlin, today there.
    assert await _notices(sqlite_database) == [
        "Thanks for your message. Our team is offline right now; we'll answer at 10:00 your time."
    ]


async def test_everyone_away_is_said_as_such(sqlite_database: Database) -> None:
    await team(
        sqlite_database,
        {"name": "Ann", "hours": ALWAYS, "availability": "away"},
        {"name": "Ben", "hours": ALWAYS, "availability": "away"},
    )
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, MONDAY_NOON)
    assert routed is not None and routed.reason == "everyone on shift is away or offline"
    assert await _notices(sqlite_database) == [
        "Thanks for your message. Nobody on shift is available right now; "
        "we'll answer as soon as someone is back."
    ]


async def test_speakers_on_shift_but_full_is_capacity_not_language(
    sqlite_database: Database, require_language: None
) -> None:
    ids = await team(
        sqlite_database,
        *ENGLISH_SHIFT,
        {"name": "Yui", "hours": ALWAYS, "languages": ("ja",), "capacity": 1},
    )
    busy = await customer_writes(sqlite_database, "m0", "c0", language="ja")
    await give(sqlite_database, busy.conversation_id, ids["Yui"], MONDAY_NOON)
    sent = await customer_writes(sqlite_database, "m1", "c1", language="ja")
    routed = await route(sqlite_database, sent, MONDAY_NOON)
    assert routed is not None and routed.reason == "everyone on shift who speaks ja is at capacity"
    [notice] = await _notices(sqlite_database)
    assert notice.endswith("we'll answer as soon as someone is free.")


async def test_without_any_shift_ahead_nothing_is_promised(sqlite_database: Database) -> None:
    await team(sqlite_database, {"name": "Nobody", "hours": {}})
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, MONDAY_NOON)
    assert routed is not None and routed.reason == "nobody is on shift"
    assert await _notices(sqlite_database) == []


async def test_an_old_message_gets_no_wait_notice_out_of_the_blue(
    sqlite_database: Database, require_language: None
) -> None:
    """An imported history or a queue left for days is not someone who has just written:
    telling them now would be a proactive message nobody switched on."""
    await team(sqlite_database, *ENGLISH_SHIFT, AIKO)
    sent = await customer_writes(
        sqlite_database, "m-old", text="こんにちは", language="ja", timezone="America/New_York"
    )
    async with sqlite_database.session() as session:
        message = await session.get(Message, sent.message_id)
        assert message is not None
        message.sent_at = MONDAY_NOON - timedelta(hours=3)  # the provider's time
        await session.commit()
    routed = await route(sqlite_database, sent, MONDAY_NOON)
    assert routed is not None and routed.member_id is None  # it waits, as before
    assert await _notices(sqlite_database) == []
    # Someone who writes now in the same conversation is answered.
    again = await customer_writes(sqlite_database, "m-new", text="もしもし", language="ja")
    async with sqlite_database.session() as session:
        message = await session.get(Message, again.message_id)
        assert message is not None
        message.sent_at = MONDAY_NOON - timedelta(minutes=1)
        await session.commit()
    await route(sqlite_database, again, MONDAY_NOON)
    assert len(await _notices(sqlite_database)) == 1
