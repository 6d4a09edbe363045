"""Shift end at a fixed instant: every open conversation moves on, with its context."""

from __future__ import annotations

from sqlalchemy import func, select

from handoff.models import ShiftEndMark
from handoff.service import handoff_shift_end, shift_end_pass
from heliograph.db import Database
from tests.utils.handoff_world import AFTER, AIKO, OLIVER, SHIFT_END, conversation_of, handoffs
from tests.utils.routing_world import assignments, conversation, team, utc


async def test_shift_end_hands_every_open_conversation_with_context(database: Database) -> None:
    ids = await team(database, AIKO, OLIVER)
    first = await conversation_of(database, ids["Aiko"], 1)
    second = await conversation_of(database, ids["Aiko"], 2, with_reply=False)

    async with database.session() as session:
        assert await shift_end_pass(session, AFTER) == 2
        await session.commit()

    for conversation_id in (first, second):
        assert (await conversation(database, conversation_id)).assignee_id == ids["Oliver"]
        last = (await assignments(database, conversation_id))[-1]
        assert (last.kind, last.member_id) == ("handoff", ids["Oliver"])
        assert last.reason.startswith("handoff from Aiko Tanaka (shift ended): ")
    [row] = await handoffs(database, first)
    assert (row.kind, row.state) == ("shift_end", "pending")
    assert (row.from_member_id, row.to_member_id) == (ids["Aiko"], ids["Oliver"])
    context = row.context
    customer = context["customer"]
    assert customer["name"] == "Ken Sato 1"
    assert customer["timezone"] == "America/Sao_Paulo"
    assert customer["local_time"] == "06:01"  # 09:01 UTC in São Paulo (UTC-3)
    assert "06:01 local (America/Sao_Paulo)" in customer["line"]
    assert customer["language"] == "en" and customer["journey_stage"]
    assert [m["text"] for m in context["messages"]] == [
        "hello, I ordered a lamp",
        "Hi Ken, let me check.",
        "It still has not arrived!",
    ]
    assert [m["author"] for m in context["messages"]] == ["Ken Sato 1", "Aiko Tanaka", "Ken Sato 1"]
    assert [(n["author"], n["text"]) for n in context["notes"]] == [
        ("Aiko Tanaka", "carrier ticket #42 filed")
    ]
    assert context["interventions"] == []
    assert context["awaiting"] == "us" and context["summary_kind"] == "extractive"
    summary = context["summary"]
    assert summary.startswith("Extractive summary (quoted from the conversation, not generated)")
    assert '"It still has not arrived!"' in summary
    assert "1 message(s) not yet answered" in summary
    [other] = await handoffs(database, second)
    assert "We have not replied in this conversation yet." in other.context["summary"]
    assert '"hello, I ordered a lamp"' in other.context["summary"]


async def test_nobody_eligible_goes_back_to_the_queue(sqlite_database: Database) -> None:
    ids = await team(sqlite_database, AIKO)
    conversation_id = await conversation_of(sqlite_database, ids["Aiko"])
    async with sqlite_database.session() as session:
        assert await shift_end_pass(session, AFTER) == 1
        await session.commit()
    assert (await conversation(sqlite_database, conversation_id)).assignee_id is None
    last = (await assignments(sqlite_database, conversation_id))[-1]
    assert (last.kind, last.member_id) == ("handoff", None)
    assert "back to the queue" in last.reason
    [row] = await handoffs(sqlite_database, conversation_id)
    assert row.to_member_id is None and row.context["messages"]


async def test_no_double_handoff_on_later_or_missed_passes(sqlite_database: Database) -> None:
    ids = await team(sqlite_database, AIKO, OLIVER)
    conversation_id = await conversation_of(sqlite_database, ids["Aiko"])
    async with sqlite_database.session() as session:
        # Passes missed until 09:40: the shift end at 09:00 is still caught, once.
        assert await shift_end_pass(session, utc(2026, 11, 24, 9, 40)) == 1
        await session.commit()
    async with sqlite_database.session() as session:
        assert await shift_end_pass(session, utc(2026, 11, 24, 9, 41)) == 0
        assert await handoff_shift_end(session, ids["Aiko"], AFTER) == []
        await session.commit()
        marks = await session.execute(select(func.count()).select_from(ShiftEndMark))
        assert marks.scalar() == 1
        mark = await session.get(ShiftEndMark, (ids["Aiko"], SHIFT_END))
        assert mark is not None and mark.handed == 1
    assert len(await handoffs(sqlite_database, conversation_id)) == 1
    assert [a.kind for a in await assignments(sqlite_database, conversation_id)] == ["handoff"]


def test_passes_run_on_the_leader_every_minute() -> None:
    from heliograph.scheduler import periodic_tasks

    tasks = {t.name: t.seconds for t in periodic_tasks()}
    assert tasks["handoff.shift_end"] == 60 and tasks["handoff.escalate"] == 60
