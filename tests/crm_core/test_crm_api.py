"""The CRM in REST API v1: profiles, programs, interventions and their rules, the timeline."""

from __future__ import annotations

from datetime import timedelta

import httpx

from crm_core import interventions
from crm_core.models import Intervention
from heliograph.db import Database
from inbox.models import Conversation
from routing.models import Assignment
from tests.utils.crm_world import API, days_ago, ev, ingest, make_programs
from tests.utils.db import rows
from tests.utils.factories import member_with_token, receive


async def test_the_profile_shows_everything_from_every_channel(
    client: httpx.AsyncClient, database: Database
) -> None:
    await make_programs(database)
    first = await receive(database, "m1", "api-9", email="ana@example.com", name="Ana Silva")
    await receive(database, "m2", "ana@example.com", channel="email", email="ana@example.com")
    await receive(
        database,
        "m3",
        "+447700900123",
        channel="sms",
        phone="+447700900123",
        email="ana@example.com",
    )
    await ingest(
        database,
        [
            ev("purchase", "p1", at=days_ago(3), program="mind-1", amount="99"),
            ev("course_progress", "c1", at=days_ago(1), program="mind-1", progress=30),
        ],
    )
    _, agent = await member_with_token(database)
    path = f"{API}/customers/{first.customer_id}/profile"
    changed = await client.patch(
        path,
        json={
            "timezone": "Asia/Kuala_Lumpur",
            "country": "my",
            "preferred_channel": "email",
            "quiet_hours_start": "22:30",
            "quiet_hours_end": "07:00",
            "interests": ["Meditation", "sleep", "meditation"],
        },
        headers=agent,
    )
    assert changed.status_code == 200, changed.text
    profile = (await client.get(path, headers=agent)).json()
    assert {i["channel"] for i in profile["identities"]} == {"api", "email", "sms"}
    assert {c["kind"] for c in profile["contacts"]} == {"email", "phone"}
    assert profile["customer"]["country"] == "MY"
    assert profile["customer"]["journey_stage"] == "commitment"
    assert profile["customer"]["lifetime_value"] == "99.00"
    assert profile["preferences"]["quiet_hours"] == {
        "start": "22:30",
        "end": "07:00",
        "timezone": "Asia/Kuala_Lumpur",
        "default": False,
    }
    assert profile["preferences"]["consent"] == {"api": True, "email": True, "sms": True}
    assert profile["interests"] == ["meditation", "sleep"]
    (enrolled,) = profile["enrollments"]
    assert (enrolled["program"]["name"], enrolled["enrollment"]["progress"]) == (
        "Mindful Mornings",
        30,
    )
    assert [j["to_stage"] for j in profile["journey"]] == ["commitment"]
    assert profile["scores"]["engagement_inputs"]["active_days_30"] == 1

    for bad, field in (
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"quiet_hours_end": "25:00"}, "HH:MM"),
        ({"preferred_channel": "fax"}, "preferred_channel"),
    ):
        refused = await client.patch(path, json=bad, headers=agent)
        assert refused.status_code == 422 and field in refused.json()["error"], bad


async def test_programs_are_managed_by_leads(client: httpx.AsyncClient, database: Database) -> None:
    _, agent = await member_with_token(database)
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    body = {
        "code": "soul-1",
        "name": "Inner Compass",
        "category": "soul",
        "price": "120.00",
        "instructor": "Maya Rao",
    }
    assert (await client.post(f"{API}/programs", json=body, headers=agent)).status_code == 403
    created = await client.post(f"{API}/programs", json=body, headers=lead)
    assert created.status_code == 201 and created.json()["category"] == "soul"
    twice = await client.post(f"{API}/programs", json=body, headers=lead)
    assert twice.status_code == 422 and "exists already" in twice.json()["error"]
    odd = await client.post(
        f"{API}/programs", json={**body, "code": "x", "category": "wealth"}, headers=lead
    )
    assert odd.status_code == 422 and "soul, mind, body, relationships" in odd.json()["error"]
    pid = created.json()["id"]
    patched = await client.patch(f"{API}/programs/{pid}", json={"price": "99.00"}, headers=lead)
    assert patched.json()["price"] == "99.00"
    assert (await client.patch(f"{API}/programs/999", json={}, headers=lead)).status_code == 404
    listed = await client.get(f"{API}/programs", headers=agent)
    assert [p["code"] for p in listed.json()] == ["soul-1"]


async def test_agents_work_the_interventions(client: httpx.AsyncClient, database: Database) -> None:
    await make_programs(database)
    agent, auth = await member_with_token(database)
    _, ceo = await member_with_token(database, "exec", "Cara Exec")
    async with database.session() as session:  # an admin lets celebrations send themselves
        await interventions.set_rule(session, "milestone_celebration", "admin", auto_send=True)
        await session.commit()
    await ingest(database, [ev("milestone_reported", "a", "a@example.com", milestone="one")])
    await ingest(database, [ev("support_ticket", f"t{n}", "b@example.com") for n in range(3)])
    async with database.session() as session:
        first = await session.get(Intervention, 1)
        assert first is not None
        first.owner_id = agent.id
        await session.commit()

    listed = (await client.get(f"{API}/interventions?state=open", headers=auth)).json()
    assert [i["rule"] for i in listed] == ["support_outreach", "milestone_celebration"]
    mine = (await client.get(f"{API}/interventions?owner_id={agent.id}", headers=auth)).json()
    assert [i["id"] for i in mine] == [1]
    support = (await client.get(f"{API}/interventions?rule=support_outreach", headers=auth)).json()
    assert [i["id"] for i in support] == [2]
    bad = await client.get(f"{API}/interventions?state=maybe", headers=auth)
    assert bad.status_code == 422

    assert (await client.post(f"{API}/interventions/2/done", headers=ceo)).status_code == 403
    done = await client.post(f"{API}/interventions/2/done", headers=auth)
    assert (done.json()["state"], done.json()["resolved_by"]) == ("done", f"member:{agent.id}")
    again = await client.post(f"{API}/interventions/2/dismiss", headers=auth)
    assert again.status_code == 409 and "already done" in again.json()["error"]
    dismissed = await client.post(f"{API}/interventions/1/dismiss", headers=auth)
    assert (dismissed.json()["state"], dismissed.json()["send_status"]) == (
        "dismissed",
        "cancelled",
    )
    assert (await client.get(f"{API}/interventions?state=open", headers=auth)).json() == []
    assert (await client.post(f"{API}/interventions/99/done", headers=auth)).status_code == 404


async def test_leads_configure_the_rules(client: httpx.AsyncClient, database: Database) -> None:
    await make_programs(database)
    _, agent = await member_with_token(database)
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    rules = (await client.get(f"{API}/intervention-rules", headers=agent)).json()
    assert [r["name"] for r in rules] == [
        "inactivity_nudge",
        "low_engagement",
        "upsell",
        "milestone_celebration",
        "support_outreach",
    ]
    path = f"{API}/intervention-rules/support_outreach"
    assert (await client.patch(path, json={"enabled": False}, headers=agent)).status_code == 403
    bad = await client.patch(path, json={"params": {"tickets": 2, "colour": 3}}, headers=lead)
    assert bad.status_code == 422 and "no parameter 'colour'" in bad.json()["error"]
    changed = await client.patch(
        path, json={"params": {"tickets": 2}, "message": "Hi {first_name}, sorry!"}, headers=lead
    )
    assert changed.json()["params"] == {"tickets": 2, "within_days": 30, "cooldown_days": 30}
    await ingest(database, [ev("support_ticket", f"t{n}", "b@example.com") for n in range(2)])
    (found,) = await rows(database, Intervention)
    assert found.suggested_message == "Hi there, sorry!"

    await client.patch(
        f"{API}/intervention-rules/milestone_celebration", json={"enabled": False}, headers=lead
    )
    await ingest(database, [ev("milestone_reported", "m", "c@example.com", milestone="x")])
    assert len(await rows(database, Intervention)) == 1  # the disabled rule stayed quiet
    run = await client.post(f"{API}/interventions/evaluate", headers=lead)
    assert run.json() == {"created": 0, "by_rule": {}}


async def test_the_timeline_interleaves_messages_events_journey_interventions_and_handoffs(
    client: httpx.AsyncClient, database: Database
) -> None:
    await make_programs(database)
    conv = await receive(database, "m1", "api-9", email="ana@example.com", text="hello there")
    async with database.session() as session:
        c = await session.get(Conversation, conv.conversation_id)
        assert c is not None
        session.add(
            Assignment(
                conversation_id=c.id,
                customer_id=c.customer_id,
                kind="handoff",
                reason="follow the sun: London -> Kuala Lumpur",
                at=c.created_at + timedelta(milliseconds=1),
            )
        )
        await session.commit()
    await ingest(
        database,
        [
            ev("purchase", "p1", at=days_ago(2), program="mind-1", amount="99"),
            ev("milestone_reported", "ms", program="mind-1", milestone="day 30"),
        ],
    )
    _, auth = await member_with_token(database)
    path = f"{API}/customers/{conv.customer_id}/timeline"
    page = (await client.get(path, headers=auth)).json()
    kinds = [e["kind"] for e in page["entries"]]
    assert set(kinds) >= {
        "message.in",
        "conversation.opened",
        "assignment.handoff",
        "event.purchase",
        "event.milestone_reported",
        "journey.commitment",
        "journey.transformation",
        "intervention.milestone_celebration",
    }
    times = [e["at"] for e in page["entries"]]
    assert times == sorted(times, reverse=True)
    assert set(kinds[-2:]) == {"journey.commitment", "event.purchase"}  # two days ago: oldest
    handoff = next(e for e in page["entries"] if e["kind"] == "assignment.handoff")
    assert handoff["summary"].startswith("follow the sun")

    first = (await client.get(f"{path}?limit=3", headers=auth)).json()
    rest = (await client.get(f"{path}?limit=50&before={first['next_before']}", headers=auth)).json()
    assert len(first["entries"]) == 3
    assert [e["kind"] for e in first["entries"] + rest["entries"]] == kinds
