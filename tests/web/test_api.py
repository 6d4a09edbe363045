"""REST API v1 as an agent, a lead, an admin and the CEO use it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytz
from sqlalchemy import select, update

from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.models import Job
from inbox.bus import MessageReceived
from inbox.models import Conversation, Message
from routing.bus import ROUTE
from routing.models import ApiToken, TeamMember
from tests.utils.factories import inbound, member_with_token, receive, store
from tests.utils.jobs import run_jobs

API = "/api/v1"


async def set_row(database: Database, model: type, row_id: int, **values: Any) -> None:
    async with database.session() as session:
        await session.execute(update(model).where(model.id == row_id).values(**values))  # type: ignore[attr-defined]
        await session.commit()


async def job_kinds(database: Database) -> list[str]:
    async with database.read_session() as session:
        return list((await session.execute(select(Job.kind).order_by(Job.id))).scalars().all())


# --- authentication and roles ------------------------------------------------------------------


async def test_every_endpoint_needs_a_valid_token(
    client: httpx.AsyncClient, database: Database
) -> None:
    member, auth = await member_with_token(database)
    for headers in (
        {},
        {"Authorization": "Bearer hg_not-a-token"},
        {"Authorization": "Basic eDp5"},
    ):
        for path in ("/conversations", "/customers?q=x", "/team-members/me", "/jobs/dead"):
            response = await client.get(API + path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "token" in response.json()["error"]
    assert (await client.get(f"{API}/team-members/me", headers=auth)).status_code == 200

    await set_row(database, TeamMember, member.id, active=False)  # type: ignore[arg-type]
    assert (await client.get(f"{API}/team-members/me", headers=auth)).status_code == 401
    await set_row(database, TeamMember, member.id, active=True)  # type: ignore[arg-type]
    async with database.session() as session:
        await session.execute(update(ApiToken).values(revoked_at=utcnow()))
        await session.commit()
    revoked = await client.get(f"{API}/team-members/me", headers=auth)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]


async def test_roles_are_enforced_on_writes(client: httpx.AsyncClient, database: Database) -> None:
    _, ceo = await member_with_token(database, "exec", "Cara Exec")
    _, agent = await member_with_token(database, "agent", "Ada Agent")
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    _, admin = await member_with_token(database, "admin", "Ann Admin")
    conv = await receive(database, "m1", "cust-1")
    other = await receive(database, "m2", "cust-2")
    path = f"{API}/conversations/{conv.conversation_id}"

    assert (await client.get(path, headers=ceo)).status_code == 200  # the CEO reads
    for action, body in (("reply", {"text": "hi"}), ("notes", {"text": "n"}), ("resolve", None)):
        refused = await client.post(f"{path}/{action}", json=body, headers=ceo)
        assert refused.status_code == 403, action
        assert refused.json()["error"] == "this needs the role agent or lead or admin; you are exec"
    detail = (await client.get(path, headers=ceo)).json()
    assert (len(detail["messages"]), detail["notes"], detail["status"]) == (1, [], "open")

    merge = f"{API}/customers/{conv.customer_id}/merge"
    assert (
        await client.post(merge, json={"source_id": other.customer_id}, headers=agent)
    ).status_code == 403
    merged = await client.post(merge, json={"source_id": other.customer_id}, headers=lead)
    assert merged.status_code == 200 and merged.json()["id"] == conv.customer_id

    for who in (ceo, agent, lead):
        assert (await client.get(f"{API}/jobs/dead", headers=who)).status_code == 403
    assert (await client.get(f"{API}/jobs/dead", headers=admin)).status_code == 200


# --- conversations -----------------------------------------------------------------------------


async def test_list_and_filter_conversations(client: httpx.AsyncClient, database: Database) -> None:
    agent, auth = await member_with_token(database)
    mine = await receive(database, "m1", "cust-1")
    done = await receive(database, "m2", "cust-2")
    telegram = await receive(database, "m3", "cust-3", channel="telegram")
    await set_row(database, Conversation, mine.conversation_id, assignee_id=agent.id)
    assert (
        await client.post(f"{API}/conversations/{done.conversation_id}/resolve", headers=auth)
    ).status_code == 200

    async def ids(**params: Any) -> list[int]:
        response = await client.get(f"{API}/conversations", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()]

    m, d, t = mine.conversation_id, done.conversation_id, telegram.conversation_id
    assert await ids() == [t, d, m]  # newest first
    assert await ids(status="open") == [t, m]
    assert await ids(status="resolved") == [d]
    assert await ids(assignee_id=agent.id) == [m]
    assert await ids(unassigned="true") == [t, d]
    assert await ids(channel="telegram") == [t]
    assert await ids(channel="api", status="open") == [m]
    assert await ids(customer_id=done.customer_id) == [d]
    assert await ids(limit=2) == [t, d]
    assert await ids(limit=2, before_id=d) == [m]

    bad = await client.get(f"{API}/conversations", params={"status": "closed"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "query.status"


async def test_a_conversation_shows_messages_notes_and_customer(
    client: httpx.AsyncClient, database: Database
) -> None:
    agent, auth = await member_with_token(database)
    conv = await receive(database, "m1", "cust-1", text="where is my order?", name="Rosa Costa")
    path = f"{API}/conversations/{conv.conversation_id}"
    sent = await client.post(f"{path}/reply", json={"text": "on its way"}, headers=auth)
    assert sent.status_code == 202
    assert (sent.json()["delivery_status"], sent.json()["author_id"]) == ("queued", agent.id)
    queued = await job_kinds(database)
    assert queued.count("outbox.deliver") == 1
    noted = await client.post(f"{path}/notes", json={"text": "refund if late"}, headers=auth)
    assert noted.status_code == 201 and noted.json()["author_id"] == agent.id
    assert await job_kinds(database) == queued  # a note goes nowhere

    detail = (await client.get(path, headers=auth)).json()
    assert [(m["direction"], m["text"]) for m in detail["messages"]] == [
        ("in", "where is my order?"),
        ("out", "on its way"),
    ]
    assert [n["text"] for n in detail["notes"]] == ["refund if late"]
    assert detail["customer"]["display_name"] == "Rosa Costa"
    assert detail["first_response_at"] is not None and detail["waiting_since"] is None

    missing = await client.get(f"{API}/conversations/999999", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["error"] == "conversation 999999 does not exist"
    assert (
        await client.post(f"{API}/conversations/999999/reply", json={"text": "x"}, headers=auth)
    ).status_code == 404


async def test_reply_and_note_need_text(client: httpx.AsyncClient, database: Database) -> None:
    _, auth = await member_with_token(database)
    conv = await receive(database, "m1")
    path = f"{API}/conversations/{conv.conversation_id}"
    for body in ({}, {"text": ""}, {"text": 5}, {"text": "hi", "extra": 1}):
        for action in ("reply", "notes"):
            response = await client.post(f"{path}/{action}", json=body, headers=auth)
            assert response.status_code == 422, (action, body)
            assert response.json()["fields"]
    blank = await client.post(f"{path}/reply", json={"text": "   "}, headers=auth)
    assert blank.status_code == 409 and "needs some text" in blank.json()["error"]
    detail = (await client.get(path, headers=auth)).json()
    assert (len(detail["messages"]), detail["notes"]) == (1, [])


async def test_resolve_and_reopen(client: httpx.AsyncClient, database: Database) -> None:
    _, auth = await member_with_token(database)
    old = await receive(database, "m1", "cust-1")
    path = f"{API}/conversations/{old.conversation_id}"
    resolved = await client.post(f"{path}/resolve", headers=auth)
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_at"]
    reopened = await client.post(f"{path}/reopen", headers=auth)
    assert reopened.status_code == 200
    assert (reopened.json()["status"], reopened.json()["resolved_at"]) == ("open", None)

    # Resolved long ago, so the customer's next message opened a new conversation...
    await client.post(f"{path}/resolve", headers=auth)
    await set_row(
        database, Conversation, old.conversation_id, resolved_at=utcnow() - timedelta(days=30)
    )
    new = await receive(database, "m2", "cust-1")
    assert new.conversation_id != old.conversation_id
    # ...and reopening the old one would make two open threads with one customer.
    clash = await client.post(f"{path}/reopen", headers=auth)
    assert clash.status_code == 409
    assert clash.json()["error"] == (
        f"conversation {new.conversation_id} with this customer on api is already open; "
        "continue there"
    )
    assert (await client.get(path, headers=auth)).json()["status"] == "resolved"


async def test_snooze_needs_a_future_time(client: httpx.AsyncClient, database: Database) -> None:
    _, auth = await member_with_token(database)
    conv = await receive(database, "m1")
    path = f"{API}/conversations/{conv.conversation_id}"

    past = (utcnow() - timedelta(minutes=1)).isoformat()
    refused = await client.post(f"{path}/snooze", json={"until": past}, headers=auth)
    assert refused.status_code == 409 and "future" in refused.json()["error"]
    for body in ({}, {"until": "tomorrow"}, {"until": None}):
        response = await client.post(f"{path}/snooze", json=body, headers=auth)
        assert response.status_code == 422, body
        assert response.json()["fields"][0]["field"] == "until"
    assert (await client.get(path, headers=auth)).json()["status"] == "open"

    until = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    in_kl = until.astimezone(pytz.timezone("Asia/Kuala_Lumpur")).isoformat()
    snoozed = await client.post(f"{path}/snooze", json={"until": in_kl}, headers=auth)
    assert snoozed.status_code == 200
    assert snoozed.json()["status"] == "snoozed"
    assert parse(snoozed.json()["snoozed_until"]) == until
    naive = until.replace(tzinfo=None).isoformat()  # naive means UTC
    again = await client.post(f"{path}/snooze", json={"until": naive}, headers=auth)
    assert parse(again.json()["snoozed_until"]) == until


def parse(stamp: str) -> datetime:
    value = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- customers ---------------------------------------------------------------------------------


async def test_customers_search_and_get(client: httpx.AsyncClient, database: Database) -> None:
    _, auth = await member_with_token(database)
    rosa = await receive(
        database,
        "m1",
        "ext-rosa",
        name="Rosa Costa",
        email="Rosa@Example.com",
        phone="+44 20 7946 0958",
    )
    await receive(database, "m2", "ext-ivan", name="Ivan Petrov")

    async def search(q: str) -> list[str]:
        response = await client.get(f"{API}/customers", params={"q": q}, headers=auth)
        assert response.status_code == 200
        return [c["display_name"] for c in response.json()]

    assert await search("rosa") == ["Rosa Costa"]
    assert await search("ROSA@example.com") == ["Rosa Costa"]
    assert await search("+44 (20) 7946-0958") == ["Rosa Costa"]
    assert await search("ext-ivan") == ["Ivan Petrov"]
    assert await search("zed") == []
    assert (await client.get(f"{API}/customers", headers=auth)).status_code == 422

    detail = (await client.get(f"{API}/customers/{rosa.customer_id}", headers=auth)).json()
    assert detail["display_name"] == "Rosa Costa"
    assert [(i["channel"], i["external_id"]) for i in detail["identities"]] == [("api", "ext-rosa")]
    assert {(c["kind"], c["value"]) for c in detail["contacts"]} == {
        ("email", "rosa@example.com"),
        ("phone", "+442079460958"),
    }
    missing = await client.get(f"{API}/customers/424242", headers=auth)
    assert (
        missing.status_code == 404 and missing.json()["error"] == "customer 424242 does not exist"
    )


async def test_merge_through_the_api(client: httpx.AsyncClient, database: Database) -> None:
    lead, auth = await member_with_token(database, "lead", "Leo Lead")
    a = await receive(database, "a1", "one", name="Maria Silva")
    b = await store(database, inbound("b1", "tg-2", channel="telegram"))
    path = f"{API}/customers/{a.customer_id}/merge"
    merged = await client.post(path, json={"source_id": b.customer_id}, headers=auth)
    assert merged.status_code == 200 and merged.json()["display_name"] == "Maria Silva"

    old = (await client.get(f"{API}/customers/{b.customer_id}", headers=auth)).json()
    assert old["id"] == a.customer_id
    assert {i["channel"] for i in old["identities"]} == {"api", "telegram"}
    twice = await client.post(path, json={"source_id": b.customer_id}, headers=auth)
    assert twice.status_code == 409 and "already merged" in twice.json()["error"]
    itself = await client.post(path, json={"source_id": a.customer_id}, headers=auth)
    assert itself.status_code == 409 and "into itself" in itself.json()["error"]
    unknown = await client.post(path, json={"source_id": 999_999}, headers=auth)
    assert unknown.status_code == 404

    timeline = (await client.get(f"{API}/customers/{a.customer_id}/timeline", headers=auth)).json()
    merges = [e for e in timeline["entries"] if e["kind"] == "customer.merge"]
    assert len(merges) == 1 and merges[0]["summary"] == f"member:{lead.id}"


async def test_the_timeline_pages_through_everything_once(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, auth = await member_with_token(database)
    first = await receive(database, "m1", "cust-1", text="one")
    path = f"{API}/conversations/{first.conversation_id}"
    await client.post(f"{path}/reply", json={"text": "two"}, headers=auth)
    await client.post(f"{path}/notes", json={"text": "three"}, headers=auth)
    await receive(database, "m2", "cust-1", text="four")
    await client.post(f"{path}/resolve", headers=auth)
    timeline = f"{API}/customers/{first.customer_id}/timeline"

    whole = (await client.get(timeline, params={"limit": 200}, headers=auth)).json()
    assert whole["next_before"] is None
    assert [(e["kind"], e["summary"]) for e in whole["entries"]] == [
        ("conversation.resolved", ""),
        ("message.in", "four"),
        ("note", "three"),
        ("message.out", "two"),
        ("message.in", "one"),
        ("conversation.opened", "on api"),
    ]

    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await client.get(timeline, params=params, headers=auth)).json()
        pages.append(page["entries"])
        if page["next_before"] is None:
            break
        params["before"] = page["next_before"]
    assert [e for p in pages for e in p] == whole["entries"]
    assert all(len(p) <= 2 for p in pages)

    naive = (utcnow() + timedelta(days=1)).replace(tzinfo=None).isoformat()
    response = await client.get(timeline, params={"before": naive}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["entries"] == whole["entries"][:50]


# --- team, health, metrics ---------------------------------------------------------------------


async def test_team_members_and_me(client: httpx.AsyncClient, database: Database) -> None:
    ada, auth = await member_with_token(database, "agent", "Ada Agent")
    leo, _ = await member_with_token(database, "lead", "Leo Lead")
    members = (await client.get(f"{API}/team-members", headers=auth)).json()
    assert [(m["name"], m["role"]) for m in members] == [
        ("Ada Agent", "agent"),
        ("Leo Lead", "lead"),
    ]
    me = (await client.get(f"{API}/team-members/me", headers=auth)).json()
    assert (me["id"], me["email"]) == (ada.id, "ada.agent@team.example")
    assert (await client.get(f"{API}/team-members/{leo.id}", headers=auth)).json()["name"] == (
        "Leo Lead"
    )
    assert (await client.get(f"{API}/team-members/9999", headers=auth)).status_code == 404


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "routing": {"due": 0, "oldest_due_s": 0.0},
    }


async def test_healthz_is_degraded_while_routing_falls_behind(
    client: httpx.AsyncClient, database: Database
) -> None:
    waited = MessageReceived(
        conversation_id=1,
        message_id=1,
        customer_id=1,
        new_conversation=True,
        reopened=False,
        has_attachments=False,
    )
    async with database.session() as session:  # a message that waited 45 s for routing
        await jobs.enqueue_many(session, [(ROUTE, waited, utcnow() - timedelta(seconds=45))])
        await session.commit()
    body = (await client.get("/healthz")).json()
    assert body["status"] == "degraded"
    assert body["routing"]["due"] == 1 and body["routing"]["oldest_due_s"] >= 45
    assert "the oldest routing job has waited 4" in body["reason"]
    assert "(bound 30 s)" in body["reason"]
    text = (await client.get("/metrics")).text  # the same wait, per kind, for a dashboard
    assert metric(text, "heliograph_jobs_due", kind="routing.route") == 1
    assert metric(text, "heliograph_job_oldest_due_seconds", kind="routing.route") >= 45


def metric(text: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    wanted = f"{name}{{{inner}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split(" ", 1)[1])
    raise AssertionError(f"{wanted} is not in /metrics")


async def jobs_by_state(database: Database) -> dict[str, float]:
    async with database.read_session() as session:
        stats = await jobs.queue_stats(session)
    return {state: float(stats.get(state, 0)) for state in ("pending", "running", "done", "dead")}


def jobs_metric(text: str) -> dict[str, float]:
    return {
        s: metric(text, "heliograph_jobs", state=s) for s in ("pending", "running", "done", "dead")
    }


async def test_metrics_count_messages_jobs_and_outbox_lag(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, auth = await member_with_token(database)
    conv = await receive(database, "m1", "cust-1")
    await receive(database, "m2", "cust-2")
    await run_jobs(database)  # whatever follows an inbound message has run
    before = jobs_metric((await client.get("/metrics")).text)
    sent = await client.post(
        f"{API}/conversations/{conv.conversation_id}/reply", json={"text": "hi"}, headers=auth
    )
    await set_row(database, Message, sent.json()["id"], created_at=utcnow() - timedelta(seconds=90))

    text = (await client.get("/metrics")).text
    assert re.search(r"^# TYPE heliograph_messages_total counter$", text, re.M)
    labels = {"channel": "api"}
    assert (
        metric(text, "heliograph_messages_total", direction="in", status="received", **labels) == 2
    )
    assert (
        metric(text, "heliograph_messages_total", direction="out", status="queued", **labels) == 1
    )
    assert jobs_metric(text) == await jobs_by_state(database)
    assert jobs_metric(text)["pending"] >= before["pending"] + 1  # the reply's delivery
    assert 90 <= metric(text, "heliograph_outbox_lag_seconds") < 120
    assert metric(text, "heliograph_conversations", status="open") == 2

    await run_jobs(database)  # no outbound URL is configured: the reply fails visibly
    text = (await client.get("/metrics")).text
    assert jobs_metric(text) == await jobs_by_state(database)
    assert jobs_metric(text)["dead"] == before["dead"] + 1
    assert (
        metric(text, "heliograph_messages_total", direction="out", status="failed", **labels) == 1
    )
    assert "queued" not in "".join(x for x in text.splitlines() if 'direction="out"' in x)
    assert metric(text, "heliograph_outbox_lag_seconds") == 0
