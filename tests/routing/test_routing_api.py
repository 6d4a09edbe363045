"""``/api/v1/routing`` as a lead and an agent use it."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy import select, update

from heliograph.db import Database
from heliograph.models import Job
from inbox.models import Conversation
from routing.bus import DRAIN
from routing.models import TeamMember
from tests.utils.factories import member_with_token
from tests.utils.routing_world import ALWAYS, add_member, customer_writes

API = "/api/v1/routing"


async def _member(database: Database, **kw: object) -> TeamMember:
    async with database.session() as session:
        member = await add_member(session, **kw)  # type: ignore[arg-type]
        await session.commit()
    return member


async def _set(database: Database, member_id: int, **values: object) -> None:
    async with database.session() as session:
        await session.execute(update(TeamMember).where(TeamMember.id == member_id).values(**values))
        await session.commit()


async def test_the_queue_lists_the_most_urgent_then_the_longest_waiting(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, auth = await member_with_token(database)  # no hours: nobody is on shift
    first = await customer_writes(database, "m1", "c1")
    second = await customer_writes(database, "m2", "c2")
    urgent = await customer_writes(database, "m3", "c3")
    async with database.session() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == urgent.conversation_id)
            .values(priority="urgent")
        )
        await session.commit()
    body = (await client.get(f"{API}/queue", headers=auth)).json()
    assert body["count"] == 3
    assert [c["conversation_id"] for c in body["conversations"]] == [
        urgent.conversation_id,
        first.conversation_id,
        second.conversation_id,
    ]
    assert body["oldest_waiting_since"] == body["conversations"][1]["waiting_since"]
    assert body["oldest_wait_s"] >= 0


async def test_who_is_on_shift_with_local_time_load_and_availability(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, auth = await member_with_token(database)
    tokyo = await _member(database, name="Aiko", timezone="Asia/Tokyo", capacity=5)
    await _member(database, name="Never", hours={})
    await _set(database, tokyo.id, availability="away")  # type: ignore[arg-type]
    sent = await customer_writes(database, "m1")
    async with database.session() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == sent.conversation_id)
            .values(assignee_id=tokyo.id)
        )
        await session.commit()
    [row] = (await client.get(f"{API}/on-shift", headers=auth)).json()
    assert (row["name"], row["availability"], row["load"], row["capacity"]) == (
        "Aiko",
        "away",
        1,
        5,
    )
    local = datetime.fromisoformat(row["local_datetime"])
    assert local.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]
    assert row["local_time"] == f"{local:%H:%M}"


async def test_a_members_week_in_local_time_and_utc(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, auth = await member_with_token(database)
    oliver = await _member(
        database, name="Oliver", timezone="Europe/London", hours={"mon": [["09:00", "17:00"]]}
    )
    body = (await client.get(f"{API}/members/{oliver.id}/schedule", headers=auth)).json()
    assert body["timezone"] == "Europe/London" and 1 <= len(body["shifts"]) <= 2
    for shift in body["shifts"]:
        start, end = (datetime.fromisoformat(shift[k]) for k in ("start_local", "end_local"))
        assert (start.weekday(), f"{start:%H:%M}", f"{end:%H:%M}") == (0, "09:00", "17:00")
        assert datetime.fromisoformat(shift["start_utc"]) == start
    missing = await client.get(f"{API}/members/9999/schedule", headers=auth)
    assert missing.status_code == 404 and "9999" in missing.json()["error"]


async def test_leads_assign_anyone_and_agents_claim_for_themselves(
    client: httpx.AsyncClient, database: Database
) -> None:
    agent, agent_auth = await member_with_token(database, "agent", "Ada Agent")
    lead, lead_auth = await member_with_token(database, "lead", "Leo Lead")
    _, ceo_auth = await member_with_token(database, "exec", "Cara Exec")
    other = await _member(database, name="Olga", hours={})
    sent = await customer_writes(database, "m1")
    path = f"{API}/conversations/{sent.conversation_id}/assign"

    refused = await client.post(path, json={"member_id": other.id}, headers=agent_auth)
    assert refused.status_code == 409 and "for themselves" in refused.json()["error"]
    assert (
        await client.post(path, json={"member_id": agent.id}, headers=ceo_auth)
    ).status_code == 403

    claimed = await client.post(path, json={"member_id": agent.id}, headers=agent_auth)
    assert claimed.status_code == 200
    assert (claimed.json()["kind"], claimed.json()["member_id"]) == ("claim", agent.id)
    assert claimed.json()["reason"].startswith("claimed by Ada Agent — UTC ")
    again = await client.post(path, json={"member_id": agent.id}, headers=agent_auth)
    assert again.status_code == 200 and again.json()["id"] == claimed.json()["id"]

    moved = await client.post(path, json={"member_id": other.id}, headers=lead_auth)
    assert moved.status_code == 200
    assert moved.json()["reason"].startswith("assigned by Leo Lead to Olga — UTC ")
    assert moved.json()["reason"].endswith(", 0/8 open (off shift)")
    assert (moved.json()["by_member_id"], moved.json()["previous_member_id"]) == (lead.id, agent.id)
    taken = await client.post(path, json={"member_id": agent.id}, headers=agent_auth)
    assert taken.status_code == 409 and "ask a lead" in taken.json()["error"]

    history = (
        await client.get(
            f"{API}/conversations/{sent.conversation_id}/assignments", headers=ceo_auth
        )
    ).json()
    assert [h["kind"] for h in history] == ["claim", "manual"]


async def test_my_availability_and_coming_online_drains_the_queue(
    client: httpx.AsyncClient, database: Database
) -> None:
    me, auth = await member_with_token(database)
    await _set(database, me.id, weekly_hours=ALWAYS)  # type: ignore[arg-type]
    away = await client.patch(f"{API}/me/availability", json={"availability": "away"}, headers=auth)
    assert away.status_code == 200 and away.json()["availability"] == "away"
    bad = await client.patch(f"{API}/me/availability", json={"availability": "busy"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "availability"

    online = await client.patch(
        f"{API}/me/availability", json={"availability": "online"}, headers=auth
    )
    assert online.status_code == 200 and online.json()["last_active_at"] is not None
    async with database.read_session() as session:
        drains = (await session.execute(select(Job).where(Job.kind == DRAIN.name))).all()
    assert len(drains) == 1
