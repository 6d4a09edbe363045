"""POST /api/v1/events: batches with bad events in them, idempotency, new customers, auth."""

from __future__ import annotations

import os

import httpx
import pytest

from crm_core.identity import merge_customers
from crm_core.models import ActivityEvent, ContactPoint, Customer, Enrollment
from heliograph.db import Database
from heliograph.settings import reset_settings
from tests.utils.crm_world import API, days_ago, ev, ingest, make_programs
from tests.utils.db import count, rows
from tests.utils.factories import member_with_token

SERVICE = {"Authorization": "Bearer platform-service-token-1"}


@pytest.fixture(autouse=True)
def _service_token(database_url: str) -> None:
    """After the database fixture has set the environment: the platform's token."""
    os.environ["HELIOGRAPH_EVENTS_API_TOKEN"] = "platform-service-token-1"
    reset_settings()


async def test_a_batch_keeps_the_valid_events_and_reports_the_others_by_index(
    client: httpx.AsyncClient, database: Database
) -> None:
    await make_programs(database)
    batch = [
        ev("purchase", "shop-1", "Ana@Example.com", program="mind-1", amount="99.00"),
        ev("course_progress", "lms-1", "ana@example.com", program="mind-1"),  # no progress
        ev("lesson_completed", "lms-2", "ana@example.com", program="mind-1", lesson="L1"),
        {"type": "teleportation", "idempotency_key": "x", "customer": {"id": 1}},
        ev("purchase", "shop-2", "someone@", program="mind-1", amount="5"),  # bad email
        ev("purchase", "shop-3", "bo@example.com", program="no-such", amount="5"),
        ev("community_post", "com-1", "+44 7700 900123"),
        "not an event",
        ev("referral", "ref-1", 9999),
        ev("course_progress", "lms-3", "ana@example.com", program="mind-1", progress=140),
    ]
    response = await client.post(f"{API}/events", json={"events": batch}, headers=SERVICE)
    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (3, 0)
    errors = {e["index"]: e["error"] for e in body["errors"]}
    assert sorted(errors) == [1, 3, 4, 5, 7, 8, 9]
    assert "course_progress event needs progress" in errors[1]
    assert errors[3].startswith("type: Input should be")
    assert "not an email address" in errors[4]
    assert errors[5] == "program: unknown program 'no-such'"
    assert errors[8] == "customer: customer 9999 does not exist"
    assert errors[9].startswith("progress:")

    stored = {e.idempotency_key for e in await rows(database, ActivityEvent)}
    assert stored == {"shop-1", "lms-2", "com-1"}
    # Unknown contacts became customers: one by email (normalised), one by phone.
    contacts = {(c.kind, c.value) for c in await rows(database, ContactPoint)}
    assert contacts == {("email", "ana@example.com"), ("phone", "+447700900123")}
    assert await count(database, Customer) == 2

    again = await client.post(f"{API}/events", json={"events": batch}, headers=SERVICE)
    assert again.status_code == 207
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 3)
    assert await count(database, ActivityEvent) == 3


async def test_one_event_alone_and_the_body_limits(
    client: httpx.AsyncClient, database: Database
) -> None:
    await make_programs(database)
    one = ev("purchase", "solo-1", "solo@example.com", program="mind-1", amount="99")
    ok = await client.post(f"{API}/events", json=one, headers=SERVICE)
    assert ok.status_code == 200
    assert ok.json() == {"accepted": 1, "duplicates": 0, "errors": []}
    assert (await client.post(f"{API}/events", json=one, headers=SERVICE)).json()["duplicates"] == 1

    bad = await client.post(
        f"{API}/events", json={"events": [{"type": "purchase"}]}, headers=SERVICE
    )
    assert bad.status_code == 422 and bad.json()["accepted"] == 0
    too_many = [ev("community_post", f"c{i}") for i in range(1001)]
    big = await client.post(f"{API}/events", json={"events": too_many}, headers=SERVICE)
    assert big.status_code == 413 and "at most 1000" in big.json()["error"]
    broken = await client.post(f"{API}/events", content=b"{nope", headers=SERVICE)
    assert broken.status_code == 400 and broken.json()["error"] == "the body is not valid JSON"
    empty = await client.post(f"{API}/events", json={"events": []}, headers=SERVICE)
    assert empty.status_code == 422


async def test_the_same_key_twice_in_one_batch_counts_once(database: Database) -> None:
    await make_programs(database)
    result = await ingest(
        database,
        [ev("community_post", "dup"), ev("community_post", "dup"), ev("community_post", "other")],
    )
    assert (result.accepted, result.duplicates, result.errors) == (2, 1, [])


async def test_events_need_the_service_token_or_a_lead(
    client: httpx.AsyncClient, database: Database
) -> None:
    await make_programs(database)
    _, agent = await member_with_token(database, "agent", "Ada Agent")
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    body = ev("community_post", "auth-1")
    assert (await client.post(f"{API}/events", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer platform-service-token-2"}
    assert (await client.post(f"{API}/events", json=body, headers=wrong)).status_code == 401
    refused = await client.post(f"{API}/events", json=body, headers=agent)
    assert refused.status_code == 403 and "lead or admin" in refused.json()["error"]
    assert (await client.post(f"{API}/events", json=body, headers=lead)).status_code == 200


async def test_events_keep_enrollments(database: Database) -> None:
    programs = await make_programs(database)
    await ingest(
        database,
        [
            ev("purchase", "e1", at=days_ago(30), program="mind-1", amount="99"),
            ev("course_progress", "e2", at=days_ago(20), program="mind-1", progress=30),
            ev("course_progress", "e3", at=days_ago(10), program="mind-1", progress=20),  # late
            ev("milestone_reported", "e4", at=days_ago(9), program="mind-1", milestone="Week 3"),
            ev(
                "lesson_completed",
                "e5",
                at=days_ago(2),
                program="mind-1",
                progress=100,
                satisfaction=5,
            ),
            ev("purchase", "e6", at=days_ago(5), program="body-1", amount="79"),
            ev("refund", "e7", at=days_ago(4), program="body-1", amount="79"),
            ev("course_progress", "e8", program="mind-2", progress=5),  # a trial, never bought
        ],
    )
    by_program = {e.program_id: e for e in await rows(database, Enrollment)}
    mind = by_program[programs["mind-1"].id]
    assert (mind.status, mind.progress, mind.satisfaction) == ("completed", 100, 5)
    assert [m["name"] for m in mind.milestones] == ["Week 3"]
    assert mind.completed_at is not None and abs((mind.completed_at - days_ago(2)).days) <= 1
    assert mind.purchased_at is not None and mind.started_at == mind.purchased_at
    assert by_program[programs["body-1"].id].status == "refunded"
    assert by_program[programs["mind-2"].id].status == "active"
    assert by_program[programs["mind-2"].id].purchased_at is None


async def test_an_event_for_a_merged_customer_reaches_the_survivor(database: Database) -> None:
    await make_programs(database)
    await ingest(database, [ev("purchase", "m1", "a@example.com", program="mind-1", amount="99")])
    await ingest(database, [ev("purchase", "m2", "b@example.com", program="mind-1", amount="49")])
    a, b = await rows(database, Customer)
    async with database.session() as session:
        await merge_customers(session, a.id, b.id, actor="test")  # type: ignore[arg-type]
        await session.commit()
    (survivor, _) = await rows(database, Customer)
    assert survivor.lifetime_value == 148  # both purchases, counted once
    assert await count(database, Enrollment) == 1  # the same program, folded
    followed = await ingest(
        database,
        [ev("community_post", "m3", b.id), ev("community_post", "m4", "b@example.com")],  # type: ignore[arg-type]
    )
    assert followed.accepted == 2
    assert {e.customer_id for e in await rows(database, ActivityEvent)} == {a.id}
