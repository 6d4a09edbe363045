"""Two simulated days for a five-region team, on a clock the test controls (no sleeping).

Customers write every 20 minutes around the clock; agents answer and resolve what they
hold for three hours. At every instant that matters (arrivals, each shift start and end
and the minute after, and every 15 minutes) the test runs what the scheduler's leader
runs: the shift-end handoff pass, the queue drain and the acknowledgement check. London
and New York never acknowledge a handoff (so escalation is exercised); the others do.

What must hold (issue: follow-the-sun routing and handoff):
- every conversation is assigned within one minute of someone eligible being on shift;
- nobody holds an open conversation while off shift: at every shift change all of them
  were handed off, each handoff carrying a context package;
- every handoff to a person ends acknowledged or escalated.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handoff.models import Handoff
from handoff.service import acknowledge, escalate_unacknowledged, shift_end_pass
from heliograph.db import Database
from inbox.conversations import set_status
from inbox.models import Conversation
from routing.models import Assignment, TeamMember
from routing.queue import drain_queue, route_conversation
from routing.schedule import is_on_shift, on_shift_now, shifts_between
from tests.utils.routing_world import customer_writes, team, utc, weekdays

# Weekday hours in each member's own zone (UTC in November in the comments). Between
# 01:00 and 02:00 UTC nobody is on: those customers wait for Kuala Lumpur.
TEAM = (
    {
        "name": "Aisyah Rahman",
        "timezone": "Asia/Kuala_Lumpur",
        "hours": weekdays(["10:00", "18:00"]),
    },  # 02-10
    {
        "name": "Dmitri Volkov",
        "timezone": "Europe/Moscow",
        "hours": weekdays(["10:00", "19:00"]),
    },  # 07-16
    {
        "name": "Oliver Bennett",
        "timezone": "Europe/London",
        "hours": weekdays(["09:00", "17:00"]),
    },  # 09-17
    {
        "name": "Maya Johnson",
        "timezone": "America/New_York",
        "hours": weekdays(["09:00", "17:00"]),
    },  # 14-22
    {
        "name": "Lucas Moreira",
        "timezone": "America/Los_Angeles",
        "hours": weekdays(["10:00", "17:00"]),
    },  # 18-01
)
START = utc(2026, 11, 24, 0, 0)  # Tuesday
END = START + timedelta(hours=48)
ARRIVAL_EVERY = timedelta(minutes=20)
RESOLVE_AFTER = timedelta(hours=3)
NEVER_ACKNOWLEDGES = ("Oliver", "Maya")  # Moscow's 16:00 handoff goes to one of them


async def _open_conversations(database: Database) -> list[Conversation]:
    async with database.read_session() as session:
        rows = await session.execute(select(Conversation).where(Conversation.status != "resolved"))
        return list(rows.scalars().all())


async def test_a_follow_the_sun_day_loses_nothing_and_leaves_no_one_with_a_sleeping_agent(
    sqlite_database: Database,
) -> None:
    database = sqlite_database
    ids = {k: v for k, v in (await team(database, *[{**m, "capacity": 100} for m in TEAM])).items()}
    async with database.read_session() as session:
        members = list((await session.execute(select(TeamMember))).scalars().all())
    by_id = {m.id: m for m in members}

    arrivals = []
    t = START
    while t < END:
        arrivals.append(t)
        t += ARRIVAL_EVERY
    boundaries = set()
    for member in members:
        for shift in shifts_between(member, START - timedelta(days=1), END):
            for edge in (shift.start, shift.end):
                if START <= edge <= END:
                    boundaries |= {edge, edge + timedelta(minutes=1)}
    ticks = {START + timedelta(minutes=15 * i) for i in range(48 * 4 + 1)}
    instants = sorted(set(arrivals) | boundaries | ticks)

    arrived_at: dict[int, object] = {}
    for n, now in enumerate(instants):
        if now in arrivals:
            result = await customer_writes(database, f"sim-{n}", f"cust-{n}", "Hi, a question")
            arrived_at[result.conversation_id] = now
            async with database.session() as session:
                await route_conversation(session, result.conversation_id, now=now)
                await session.commit()
        async with database.session() as session:
            await shift_end_pass(session, now)
            await session.commit()
        await drain_queue(database, now=now)
        async with database.session() as session:
            pending = (
                (
                    await session.execute(
                        select(Handoff).where(
                            Handoff.state == "pending", Handoff.to_member_id.is_not(None)
                        )  # type: ignore[union-attr]
                    )
                )
                .scalars()
                .all()
            )
            for row in pending:
                receiver = by_id[row.to_member_id]
                if not receiver.name.startswith(NEVER_ACKNOWLEDGES):
                    await acknowledge(session, row.id, receiver, now=now)  # type: ignore[arg-type]
            await escalate_unacknowledged(session, now)
            for conversation_id, at in arrived_at.items():
                if now - at >= RESOLVE_AFTER:  # type: ignore[operator]
                    conversation = await session.get(Conversation, conversation_id)
                    if conversation is not None and conversation.status != "resolved":
                        await set_status(session, conversation_id, "resolved")
            await session.commit()

        # Nobody holds an open conversation while off shift (checked at every instant).
        for conversation in await _open_conversations(database):
            if conversation.assignee_id is not None:
                holder = by_id[conversation.assignee_id]
                assert is_on_shift(holder, now), (
                    f"{holder.name} holds conversation {conversation.id} off shift at {now}"
                )

    # Every conversation was assigned within a minute of someone being on shift.
    async with database.read_session() as session:
        history = (
            (await session.execute(select(Assignment).order_by(Assignment.id))).scalars().all()
        )
    first_assigned: dict[int, object] = {}
    for row in history:
        if row.member_id is not None:
            first_assigned.setdefault(row.conversation_id, row.at)
    waited = 0
    for conversation_id, at in arrived_at.items():
        assert conversation_id in first_assigned, f"conversation {conversation_id} never assigned"
        eligible_from = at
        while not on_shift_now(members, eligible_from):  # type: ignore[arg-type]
            eligible_from += timedelta(minutes=1)  # type: ignore[operator]
        waited += eligible_from != at
        assigned = first_assigned[conversation_id]
        assert assigned - eligible_from <= timedelta(minutes=1), (  # type: ignore[operator]
            f"conversation {conversation_id}: someone was on shift from {eligible_from}, "
            f"assigned only at {assigned}"
        )
    assert waited >= 4, "the 01:00-02:00 UTC gap should have made some customers wait"

    # Shift changes handed conversations over, each with a context package, and every
    # handoff to a person was acknowledged or escalated.
    async with database.read_session() as session:
        handoffs = (await session.execute(select(Handoff))).scalars().all()
    shift_ends = [h for h in handoffs if h.kind == "shift_end"]
    # (Who held nothing at their shift end hands nothing over; the per-instant check above
    # proves nobody kept anything past theirs.)
    assert len(shift_ends) >= 10 and len({h.from_member_id for h in shift_ends}) >= 3
    for row in shift_ends:
        assert row.context["customer"]["line"] and row.context["summary"].startswith(
            "Extractive summary"
        )
    late = END - timedelta(minutes=10)
    unresolved = [
        h
        for h in handoffs
        if h.to_member_id is not None and h.state == "pending" and h.created_at < late  # type: ignore[operator]
    ]
    assert unresolved == []
    slackers = {ids["Oliver"], ids["Maya"]}
    assert {h.state for h in handoffs if h.to_member_id in slackers} == {"escalated"}
    assert any(h.kind == "escalation" for h in handoffs)
    assert any(h.state == "acknowledged" for h in handoffs)
