"""Only members whose role answers customers are given conversations, on every path."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from handoff.service import handoff_manual
from heliograph.db import Database
from routing import snapshot
from routing.assignment import AssignmentRefused
from routing.models import RoutingWait, TeamMember
from routing.queue import drain_queue
from routing.team import TeamFileError, import_team, parse_team
from service.demo import TEAM_FILE
from tests.utils.factories import member_with_token
from tests.utils.routing_world import (
    ALWAYS,
    assignments,
    conversation,
    customer_writes,
    give,
    route,
    team,
    utc,
    weekdays,
)

NOON = utc(2026, 6, 8, 12, 0)  # a Monday


async def test_an_exec_and_an_admin_with_working_hours_are_never_routed(
    sqlite_database: Database,
) -> None:
    ids = await team(
        sqlite_database,
        {"name": "Cara Exec", "role": "exec", "hours": ALWAYS},
        {"name": "Adam Admin", "role": "admin", "hours": ALWAYS},
    )
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, NOON)
    assert routed is not None and (routed.member_id, routed.reason) == (None, "nobody is on shift")
    assert await assignments(sqlite_database, sent.conversation_id) == []

    # The queue drain (the batch path) does not give it to them either ...
    assert await drain_queue(sqlite_database, now=NOON) == 0
    assert (await conversation(sqlite_database, sent.conversation_id)).assignee_id is None

    # ... while an agent who comes on shift takes it; the exec and admin stay free.
    more = await team(sqlite_database, {"name": "Ada Agent", "hours": ALWAYS})
    assert await drain_queue(sqlite_database, now=NOON) == 1
    conv = await conversation(sqlite_database, sent.conversation_id)
    assert conv.assignee_id == more["Ada"]
    assert conv.assignee_id not in (ids["Cara"], ids["Adam"])


async def test_an_admin_is_routed_when_configured_to_answer(sqlite_database: Database) -> None:
    ids = await team(
        sqlite_database,
        {"name": "Adam Admin", "role": "admin", "hours": ALWAYS, "answers_customers": True},
        {"name": "Cara Exec", "role": "exec", "hours": ALWAYS},
    )
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, NOON)
    assert routed is not None and routed.member_id == ids["Adam"]
    assert routed.reason == "Adam Admin — UTC 12:00, 0/8 open"


def _team_file(routing: str = "", lead_extra: str = "") -> str:
    return f"""
{routing}
members:
  - name: Lena Lead
    email: lena@team.example
    role: lead
    hours: {{mon: [["00:00", "24:00"]]}}
    languages: [en]
{lead_extra}
  - name: Nick Night
    email: nick@team.example
    role: agent
    hours: {{sun: [["00:00", "24:00"]]}}
"""


async def _import(database: Database, text: str) -> dict[str, TeamMember]:
    async with database.session() as session:
        await import_team(session, text)
        await session.commit()
        members = (await session.execute(select(TeamMember))).scalars().all()
    snapshot.recheck()
    return {m.name.split()[0]: m for m in members}


@pytest.mark.parametrize(
    ("routing", "lead_extra", "lena_answers"),
    [
        ("", "", False),  # the default: leads are not routed
        ("routing: {leads_answer_customers: false}", "", False),
        ("routing: {leads_answer_customers: true}", "", True),
        # The member's own setting wins over the team's default.
        ("routing: {leads_answer_customers: true}", "    answers_customers: false", False),
        ("", "    answers_customers: true", True),
    ],
)
async def test_a_lead_is_routed_only_when_the_team_says_so(
    sqlite_database: Database, routing: str, lead_extra: str, lena_answers: bool
) -> None:
    members = await _import(sqlite_database, _team_file(routing, lead_extra))
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, NOON)  # Monday: only Lena is on shift
    assert routed is not None
    if lena_answers:
        assert routed.member_id == members["Lena"].id
        assert routed.reason == "Lena Lead — UTC 12:00, 0/8 open"
    else:
        assert (routed.member_id, routed.reason) == (None, "nobody is on shift")
        # The customer is promised Nick's Sunday, not told a lead will answer now.
        async with sqlite_database.read_session() as session:
            wait = await session.get(RoutingWait, sent.conversation_id)
        assert wait is not None and wait.promised_at == utc(2026, 6, 14, 0, 0)


def test_a_bad_routing_section_names_the_field() -> None:
    with pytest.raises(TeamFileError) as bad:
        parse_team(_team_file("routing: {leads_answer: yes}"))
    assert str(bad.value).startswith("routing.leads_answer: Extra inputs are not permitted")
    with pytest.raises(TeamFileError) as wrong:
        parse_team(_team_file("routing: {leads_answer_customers: sometimes}"))
    assert str(wrong.value).startswith("routing.leads_answer_customers: Input should be")


async def test_the_demo_team_routes_its_lead_but_not_its_admin_or_exec(
    sqlite_database: Database,
) -> None:
    members = await _import(sqlite_database, TEAM_FILE.read_text(encoding="utf-8"))
    flags = {name: m.answers_customers for name, m in members.items()}
    assert flags["Oliver"] is True  # the EMEA lead, with hours
    assert flags["Helena"] is None and flags["Ravi"] is None  # admin and exec: their role


async def test_a_lead_cannot_assign_to_an_exec_by_hand(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, lead_auth = await member_with_token(database, "lead", "Leo Lead")
    ceo, _ = await member_with_token(database, "exec", "Cara Exec")
    admin, _ = await member_with_token(database, "admin", "Adam Admin")
    agent, _ = await member_with_token(database, "agent", "Ada Agent")
    sent = await customer_writes(database, "m1", "c1")
    path = f"/api/v1/routing/conversations/{sent.conversation_id}/assign"

    refused = await client.post(path, json={"member_id": ceo.id}, headers=lead_auth)
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "Cara Exec (exec) does not answer customers; give the conversation to an "
        "agent, or set answers_customers: true for them in the team file"
    }
    to_admin = await client.post(path, json={"member_id": admin.id}, headers=lead_auth)
    assert to_admin.status_code == 409 and "Adam Admin (admin)" in to_admin.json()["error"]
    assert await assignments(database, sent.conversation_id) == []

    done = await client.post(path, json={"member_id": agent.id}, headers=lead_auth)
    assert done.status_code == 200 and done.json()["member_id"] == agent.id


async def test_a_handoff_goes_to_the_next_agent_on_shift_never_to_an_admin(
    sqlite_database: Database,
) -> None:
    ids = await team(
        sqlite_database,
        {"name": "Ana Agent", "hours": ALWAYS},
        # The admin's shift starts first (13:00 UTC), the agent's later (15:00 UTC).
        {"name": "Adam Admin", "role": "admin", "hours": weekdays(["13:00", "18:00"])},
        {"name": "Bob Later", "hours": weekdays(["15:00", "18:00"])},
        {"name": "Leo Lead", "role": "lead", "hours": {}},
    )
    sent = await customer_writes(sqlite_database, "m1", "c1")
    await give(sqlite_database, sent.conversation_id, ids["Ana"], NOON)
    async with sqlite_database.session() as session:
        lead = await session.get(TeamMember, ids["Leo"])
        row = await handoff_manual(session, sent.conversation_id, lead, now=NOON)  # type: ignore[arg-type]
        await session.commit()
    assert row.to_member_id == ids["Bob"]
    assert (await conversation(sqlite_database, sent.conversation_id)).assignee_id == ids["Bob"]

    async with sqlite_database.session() as session:
        lead = await session.get(TeamMember, ids["Leo"])
        with pytest.raises(AssignmentRefused, match="Adam Admin \\(admin\\) does not answer"):
            await handoff_manual(
                session,
                sent.conversation_id,
                lead,  # type: ignore[arg-type]
                to_member_id=ids["Adam"],
                now=NOON,
            )
