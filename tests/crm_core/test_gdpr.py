"""GDPR: export everything held about a customer; erase them everywhere, keeping an audit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from crm_core.bus import INTERVENTION_OPENED, InterventionOpened
from crm_core.models import (
    ActivityEvent,
    ContactPoint,
    Customer,
    CustomerScore,
    Enrollment,
    Identity,
    Intervention,
    JourneyChange,
)
from heliograph import jobs
from heliograph.db import Database
from heliograph.models import AuditEvent, Job
from inbox.conversations import add_note, reply
from inbox.models import Message, Note
from routing.models import Assignment
from tests.utils.crm_world import API, ev, ingest, make_programs
from tests.utils.db import count, rows
from tests.utils.factories import member_with_token, receive
from tests.utils.jobs import listening

SURFACE = jobs.JobKind("test.surface", InterventionOpened)  # a card with a name


@pytest.fixture
def surface() -> Iterator[None]:
    with listening(INTERVENTION_OPENED, SURFACE, alone=True):
        yield


async def a_customer_with_history(database: Database) -> int:
    await make_programs(database)
    conv = await receive(
        database,
        "m1",
        "tg-77",
        text="Hi, I'm Ana, my phone is +44 7700 900123",
        email="ana@example.com",
        name="Ana Silva",
    )
    await receive(database, "m2", "ana@example.com", channel="email", email="ana@example.com")
    async with database.session() as session:
        await reply(session, conv.conversation_id, "Hello Ana!", None)
        await add_note(session, conv.conversation_id, "Ana sounds upset about billing", None)
        session.add(
            Assignment(
                conversation_id=conv.conversation_id,
                customer_id=conv.customer_id,
                kind="handoff",
                reason="shift change: London -> Kuala Lumpur",
            )
        )
        await session.commit()
    await ingest(
        database,
        [
            ev("purchase", "p1", program="mind-1", amount="99"),
            ev("milestone_reported", "ms1", program="mind-1", milestone="first month"),
        ],
    )
    return conv.customer_id


async def test_the_export_holds_everything_in_one_document(
    client: httpx.AsyncClient, database: Database
) -> None:
    customer_id = await a_customer_with_history(database)
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    _, agent = await member_with_token(database, "agent", "Ada Agent")
    assert (
        await client.get(f"{API}/customers/{customer_id}/export", headers=agent)
    ).status_code == 403
    response = await client.get(f"{API}/customers/{customer_id}/export", headers=lead)
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    doc = response.json()
    assert doc["customer"]["display_name"] == "Ana Silva"
    assert {i["channel"] for i in doc["identities"]} == {"api", "email"}
    assert {c["value"] for c in doc["contact_points"]} == {"ana@example.com"}
    (conv_api, conv_email) = doc["conversations"]
    assert [m["text"] for m in conv_api["messages"]] == [
        "Hi, I'm Ana, my phone is +44 7700 900123",
        "Hello Ana!",
    ]
    assert conv_api["notes"][0]["text"] == "Ana sounds upset about billing"
    assert conv_email["channel"] == "email"
    assert {e["idempotency_key"] for e in doc["activity_events"]} == {"p1", "ms1"}
    assert doc["enrollments"][0]["milestones"][0]["name"] == "first month"
    assert [j["to_stage"] for j in doc["journey"]] == ["commitment", "transformation"]
    assert doc["scores"][0]["ltv_inputs"]["lifetime_value"] == "99.00"
    assert doc["interventions"][0]["rule"] == "milestone_celebration"
    assert doc["assignments"][0]["kind"] == "handoff"


async def test_erasure_removes_the_person_and_keeps_an_audit_row(
    client: httpx.AsyncClient, database: Database, surface: None
) -> None:
    customer_id = await a_customer_with_history(database)
    assert await count(database, Job, Job.kind == "test.surface") == 1
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    admin, admin_auth = await member_with_token(database, "admin", "Ann Admin")
    path = f"{API}/customers/{customer_id}/erase"
    assert (await client.post(path, headers=lead)).status_code == 403

    response = await client.post(path, headers=admin_auth)
    assert response.status_code == 200
    assert response.json()["rows"]["message"] == 3 and response.json()["rows"]["identity"] == 2

    (customer,) = await rows(database, Customer)
    assert (customer.display_name, customer.search_name, customer.erased_at is not None) == (
        "",
        "",
        True,
    )
    assert (customer.timezone, customer.lifetime_value, customer.journey_stage) == (
        None,
        0,
        "discovery",
    )
    for model in (
        Identity,
        ContactPoint,
        ActivityEvent,
        Enrollment,
        JourneyChange,
        CustomerScore,
        Intervention,
    ):
        assert await count(database, model) == 0, model.__tablename__
    assert {m.text for m in await rows(database, Message)} == {"[erased]"}
    assert {n.text for n in await rows(database, Note)} == {"[erased]"}
    assert await count(database, Job, Job.kind == "test.surface") == 0
    (audit,) = await rows(database, AuditEvent, AuditEvent.action == "customer.erase")
    assert (audit.actor, audit.subject_id) == (f"member:{admin.id}", customer_id)
    kept = json.dumps(audit.details)
    for personal in ("Ana", "ana@example.com", "+447700900123", "tg-77"):
        assert personal not in kept

    again = await client.delete(f"{API}/customers/{customer_id}", headers=admin_auth)
    assert again.status_code == 409 and "erased already" in again.json()["error"]
    # The platform sends the same email again: a new, separate customer (the old is gone).
    result = await ingest(database, [ev("community_post", "after", "ana@example.com")])
    assert result.accepted == 1 and await count(database, Customer) == 2
    by_id = await ingest(database, [ev("community_post", "after-2", customer_id)])
    assert by_id.errors == [{"index": 0, "error": f"customer: customer {customer_id} was erased"}]
