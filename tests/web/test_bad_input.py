"""No input answers a 500: each kind of bad input gets a 4xx that says what was wrong.

One mechanism per kind (heliograph/bounds.py, web/boundary.py, channels/signatures.py), so
these check one route or two of each kind; the fuzz run (tests/fuzz) covers the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import ActivityEvent, Program
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox.models import Conversation, Message, Note
from tests.utils.db import count
from tests.utils.factories import member_with_token, receive
from tests.utils.signing import signed_headers

API = "/api/v1"
DEEP = b"[" * 100_000 + b"]" * 100_000


def fields(response: httpx.Response) -> set[str]:
    return {f["field"] for f in response.json().get("fields", [])}


@pytest.fixture
async def world(database: Database) -> dict[str, Any]:
    _, admin = await member_with_token(database, "admin", "Ann Admin")
    got = await receive(database, "m1", "cust-1", name="Ana Silva")
    return {"admin": admin, "conversation": got.conversation_id, "customer": got.customer_id}


async def test_ids_outside_the_integer_range_are_422(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    admin = world["admin"]
    for path in (
        f"{API}/customers/2147483648",
        f"{API}/conversations/99999999999999999999",
        f"{API}/conversations?customer_id=2147483648",
        f"{API}/interventions?owner_id=-1",
    ):
        response = await client.get(path, headers=admin)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]
    merge = await client.post(
        f"{API}/customers/{world['customer']}/merge", json={"source_id": 2**40}, headers=admin
    )
    assert merge.status_code == 422 and fields(merge) == {"source_id"}
    # The largest id the database holds is a plain "not found", on SQLite and PostgreSQL.
    largest = await client.get(f"{API}/customers/2147483647", headers=admin)
    assert largest.status_code == 404, largest.text


async def test_null_for_a_required_field_in_a_patch_is_422(
    client: httpx.AsyncClient, database: Database, world: dict[str, Any]
) -> None:
    admin = world["admin"]
    profile = f"{API}/customers/{world['customer']}/profile"
    for body in ({"display_name": None}, {"vip": None}):
        refused = await client.patch(profile, json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        assert fields(refused) == set(body) and "may not be null" in refused.json()["error"]
    cleared = await client.patch(profile, json={"language": None}, headers=admin)
    assert cleared.status_code == 200 and cleared.json()["customer"]["language"] is None
    assert cleared.json()["customer"]["display_name"] == "Ana Silva"

    program = {"code": "soul-1", "name": "Inner Compass", "category": "soul"}
    created = await client.post(f"{API}/programs", json=program, headers=admin)
    assert created.status_code == 201, created.text
    path = f"{API}/programs/{created.json()['id']}"
    for body in ({"name": None}, {"active": None}, {"price": None}):
        refused = await client.patch(path, json=body, headers=admin)
        assert refused.status_code == 422 and fields(refused) == set(body), refused.text
    async with database.read_session() as session:
        (stored,) = (await session.execute(select(Program))).scalars().all()
    assert (stored.name, stored.active) == ("Inner Compass", True)
    rule = await client.patch(
        f"{API}/intervention-rules/inactivity_nudge", json={"enabled": None}, headers=admin
    )
    assert rule.status_code in (404, 422) and "enabled" in rule.text


async def test_nul_characters_are_refused_naming_the_field(
    client: httpx.AsyncClient, database: Database, world: dict[str, Any]
) -> None:
    admin = world["admin"]
    notes = f"{API}/conversations/{world['conversation']}/notes"
    for body, field in (
        ({"text": "a\u0000b"}, "text"),
        ({"te\u0000xt": "a"}, ""),
    ):
        refused = await client.post(notes, json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        assert "NUL" in refused.json()["error"] and fields(refused) == {field}
    query = await client.get(f"{API}/customers", params={"q": "An\u0000a"}, headers=admin)
    assert query.status_code == 422 and fields(query) == {"query.q"}
    contact = await client.post(
        f"{API}/customers/{world['customer']}/contacts",
        json={"kind": "email", "value": "ana\u0000@example.com"},
        headers=admin,
    )
    assert contact.status_code == 422 and fields(contact) == {"value"}
    assert await count(database, Note) == 0


async def test_dates_at_the_edges_of_the_calendar_are_422(
    client: httpx.AsyncClient, database: Database, world: dict[str, Any]
) -> None:
    admin = world["admin"]
    snooze = f"{API}/conversations/{world['conversation']}/snooze"
    for until in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01"):
        refused = await client.post(snooze, json={"until": until}, headers=admin)
        assert refused.status_code == 422, (until, refused.text)
        assert "outside the supported range" in refused.json()["error"]
    timeline = await client.get(
        f"{API}/customers/{world['customer']}/timeline",
        params={"before": "9999-12-31T23:59:59-14:00"},
        headers=admin,
    )
    assert timeline.status_code == 422 and "outside the supported range" in timeline.text
    async with database.read_session() as session:
        conversation = await session.get(Conversation, world["conversation"])
    assert conversation is not None and conversation.status == "open"


async def test_json_nested_100000_deep_is_400_everywhere(
    client: httpx.AsyncClient, database: Database, world: dict[str, Any]
) -> None:
    admin = world["admin"]
    json_type = {"Content-Type": "application/json"}
    answers = [
        await client.post(
            f"{API}/conversations/{world['conversation']}/notes",
            content=DEEP,
            headers={**admin, **json_type},
        ),
        await client.post(f"{API}/events", content=DEEP, headers={**admin, **json_type}),
        await client.post(f"{API}/inbound", content=DEEP, headers=signed_headers(DEEP)),
    ]
    for response in answers:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "the JSON is nested deeper than 64 levels"
    at_the_limit = b'{"text": "ok", "x": ' + b"[" * 63 + b"]" * 63 + b"}"
    shallow = await client.post(
        f"{API}/conversations/{world['conversation']}/notes",
        content=at_the_limit,
        headers={**admin, **json_type},
    )
    assert shallow.status_code == 422 and fields(shallow) == {"x"}  # an unknown field, no more
    assert await count(database, Message) == 1


CHANNEL_ENV = {
    "HELIOGRAPH_TELEGRAM_BOT_TOKEN": "123:abc",
    "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": "tg-secret",
    "HELIOGRAPH_SLACK_BOT_TOKEN": "xoxb-1",
    "HELIOGRAPH_SLACK_SIGNING_SECRET": "slack-secret",
    "HELIOGRAPH_WHATSAPP_APP_SECRET": "wa-secret",
    "HELIOGRAPH_WHATSAPP_VERIFY_TOKEN": "wa-verify",
    "HELIOGRAPH_EMAIL_WEBHOOK_SECRET": "mail-secret",
    "HELIOGRAPH_EVENTS_API_TOKEN": "events-secret",
}
WHATSAPP_ENV = {
    "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN": "wa-access",
    "HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",  # the fixture's number
}
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ODD = "sha256=\u00e9t\u00e9-\u00ff".encode("latin-1")  # what a client can put in a header


async def test_non_ascii_signature_headers_are_refused_like_wrong_ones(
    client: httpx.AsyncClient,
    database: Database,
    world: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in CHANNEL_ENV.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    body = b'{"update_id": 1}'
    ts = str(int(time.time()))
    posts = {
        "/webhooks/telegram": {b"x-telegram-bot-api-secret-token": ODD},
        "/webhooks/slack/events": {
            b"x-slack-request-timestamp": ts.encode(),
            b"x-slack-signature": ODD,
        },
        "/webhooks/whatsapp": {b"x-hub-signature-256": ODD},
        "/webhooks/email": {b"authorization": b"Bearer " + ODD},
        f"{API}/inbound": {b"x-heliograph-signature": ODD},
    }
    for path, headers in posts.items():
        raw = [(b"content-type", b"application/json"), *headers.items()]
        response = await client.post(path, content=body, headers=raw)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]
    subscribe = await client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "\u00e9t\u00e9", "hub.challenge": "1"},
    )
    assert subscribe.status_code == 403, subscribe.text
    for method, path in (("POST", f"{API}/events"), ("GET", f"{API}/team-members/me")):
        bearer = await client.request(
            method, path, json={}, headers=[(b"authorization", b"Bearer " + ODD)]
        )
        assert bearer.status_code == 401, (path, bearer.text)
    assert await count(database, Message) == 1


async def test_a_bad_event_is_reported_by_index_and_the_rest_kept(
    client: httpx.AsyncClient, database: Database, world: dict[str, Any]
) -> None:
    good = {"type": "community_post", "customer": {"email": "ana@example.com"}}
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(20):
        cursor["x"] = {}
        cursor = cursor["x"]
    bad = [
        {"lesson": "a\u0000b", "type": "lesson_completed", "program": "p"},
        {"customer": {"id": 2**31}},
        {"data": deep},
        {"data": {"n": 2**70}},
        {"occurred_at": "0001-01-01T00:00:00+01:00"},
        {"occurred_at": "9999-12-31T23:59:59-01:00"},
        {"customer": {"email": "ana@example.com", "name": "Ana\u0000"}},
        {"type": 5},
        {"data": ["not", "an", "object"]},
    ]
    batch: list[Any] = [{**good, "idempotency_key": "good-0"}]
    batch += [{**good, "idempotency_key": f"bad-{i}", **b} for i, b in enumerate(bad, 1)]
    batch += ["not an event", None, {**good, "idempotency_key": "good-last"}]
    response = await client.post(f"{API}/events", json={"events": batch}, headers=world["admin"])
    assert response.status_code == 207, response.text
    result = response.json()
    assert result["accepted"] == 2
    assert [e["index"] for e in result["errors"]] == list(range(1, len(batch) - 1))
    problems = {e["index"]: e["error"] for e in result["errors"]}
    assert "NUL" in problems[1] and "customer.id" in problems[2]
    assert "nested deeper than 16" in problems[3] and "64-bit" in problems[4]
    assert "outside the supported range" in problems[5] and "supported range" in problems[6]
    async with database.read_session() as session:
        keys = (await session.execute(select(ActivityEvent.idempotency_key))).scalars().all()
    assert sorted(keys) == ["good-0", "good-last"]


async def test_a_provider_nul_is_stripped_after_the_signature(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meta retries what it gets no 200 for, then drops it: a NUL in a customer's message
    is taken out of the text, not a reason to lose the message (nor a 500 at the INSERT)."""
    for key, value in {**CHANNEL_ENV, **WHATSAPP_ENV}.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    payload = json.loads((FIXTURES / "whatsapp" / "text.json").read_text())
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["text"]["body"] = "where\u0000 is it?"
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(b"wa-secret", body, hashlib.sha256).hexdigest()
    response = await client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    assert response.status_code == 200, response.text
    async with database.read_session() as session:
        texts = (await session.execute(select(Message.text).order_by(Message.id))).scalars().all()
    assert texts[-1] == "where is it?"
