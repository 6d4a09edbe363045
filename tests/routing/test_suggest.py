"""The router's suggestion (routing/suggest.py): the member the router itself would pick at
that instant, with the router's reason in words, or why nobody may take it; nothing is
written, and the loads it counts are exact even when the team snapshot's are stale."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from heliograph.db import Database
from inbox.conversations import ConversationNotFound, set_tags
from inbox.ingest import AcceptResult
from inbox.models import Conversation
from routing.suggest import suggest
from tests.utils.routing_world import (
    assignments,
    conversation,
    customer_writes,
    give,
    route,
    team,
    utc,
    weekdays,
)

# Monday 12:00 UTC: 20:00 in Kuala Lumpur, 14:00 in Madrid. Maya and Ben work all day
# on weekdays, in their own zones.
NOON = utc(2026, 6, 8, 12, 0)
ALL_WEEKDAY = weekdays(["00:00", "24:00"])


async def _world(database: Database) -> dict[str, int]:
    return await team(
        database,
        {
            "name": "Maya Tan",
            "timezone": "Asia/Kuala_Lumpur",
            "languages": ("es", "en"),
            "expertise": ("billing",),
            "capacity": 5,
            "hours": ALL_WEEKDAY,
        },
        {
            "name": "Ben Ortiz",
            "timezone": "Europe/Madrid",
            "languages": ("en",),
            "capacity": 5,
            "hours": ALL_WEEKDAY,
        },
        # Off shift at noon UTC (their Monday shift is 09:00-17:00 in Tokyo).
        {
            "name": "Aiko Tanaka",
            "timezone": "Asia/Tokyo",
            "hours": weekdays(["09:00", "17:00"]),
            "languages": ("es",),
            "expertise": ("billing",),
        },
    )


async def _billing_in_spanish(database: Database) -> AcceptResult:
    sent = await customer_writes(database, "m1", "cust-1", language="es")
    async with database.session() as session:
        await set_tags(session, sent.conversation_id, ["billing"])
        await session.commit()
    return sent


async def test_the_suggestion_is_the_routers_pick_with_its_reason_and_writes_nothing(
    database: Database,
) -> None:
    ids = await _world(database)
    for n in range(2):  # Maya already has two open
        other = await customer_writes(database, f"load-{n}", f"other-{n}")
        await give(database, other.conversation_id, ids["Maya"], NOON)
    sent = await _billing_in_spanish(database)
    cid = sent.conversation_id

    async with database.read_session() as session:
        got = await suggest(session, cid, NOON)
    assert got.member_id == ids["Maya"] and got.name == "Maya Tan"
    assert got.reason == "Maya Tan — Kuala Lumpur 20:00, speaks es, knows billing, 2/5 open"
    assert (got.load, got.capacity, got.speaks, got.knows) == (2, 5, "es", ("billing",))
    assert got.nobody is None and not got.previous_agent
    # A suggestion only: nobody was assigned, no history was written.
    assert (await conversation(database, cid)).assignee_id is None
    assert await assignments(database, cid) == []

    # The router, asked at the same instant, picks the same member for the same reason.
    routed = await route(database, sent, NOON)
    assert routed is not None and (routed.member_id, routed.reason) == (got.member_id, got.reason)


async def test_exact_loads_a_full_member_and_nobody_free(database: Database) -> None:
    ids = await _world(database)
    cid = (await _billing_in_spanish(database)).conversation_id
    async with database.read_session() as session:
        assert (await suggest(session, cid, NOON)).member_id == ids["Maya"]
    # Maya fills up behind the team snapshot's back (no invalidate): the suggestion counts
    # her open conversations exactly and passes to Ben, who neither speaks es nor knows billing.
    for n in range(5):
        other = await customer_writes(database, f"full-{n}", f"other-{n}")
        async with database.session() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == other.conversation_id)  # type: ignore[arg-type]
                .values(assignee_id=ids["Maya"])
            )
            await session.commit()
    async with database.read_session() as session:
        got = await suggest(session, cid, NOON)
    assert got.member_id == ids["Ben"]
    assert got.reason == (
        "Ben Ortiz — Madrid 14:00, does not speak es, knows none of billing, 0/5 open"
    )
    assert got.speaks is None and got.knows == ()

    # Sunday noon: nobody works; the router's words for why.
    async with database.read_session() as session:
        sunday = await suggest(session, cid, utc(2026, 6, 14, 12, 0))
    assert (sunday.member_id, sunday.name) == (None, None)
    assert (sunday.nobody, sunday.reason) == ("off_shift", "nobody is on shift")


async def test_an_unknown_conversation(database: Database) -> None:
    async with database.read_session() as session:
        with pytest.raises(ConversationNotFound):
            await suggest(session, 999_999, NOON)
