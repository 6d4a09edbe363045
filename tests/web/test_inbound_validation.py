"""POST /api/v1/inbound turns away what it cannot trust or understand, stores none of it,
and never answers 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crm_core.models import Customer, Identity
from heliograph.db import Database
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.models import Conversation, Message
from tests.utils.http import post_api
from tests.utils.signing import inbound_body, sign, signed_headers

URL = "/api/v1/inbound"


# For tests where the database engine plays no part: one run, on SQLite.
ENGINE_NEUTRAL = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def snapshot(database: Database) -> dict[str, Any]:
    """Row counts, and the existing conversation as the agent sees it."""
    async with database.read_session() as session:
        counts = {
            model.__name__: (
                await session.execute(select(func.count()).select_from(model))
            ).scalar_one()
            for model in (Customer, Identity, Conversation, Message, Job)
        }
        conversations = (await session.execute(select(Conversation))).scalars().all()
        messages = (await session.execute(select(Message.text).order_by(Message.id))).all()
    return {
        "counts": counts,
        "conversations": [
            (c.id, c.status, c.last_message_at, c.waiting_since, c.identity_id)
            for c in conversations
        ],
        "messages": [m[0] for m in messages],
    }


@pytest.fixture
async def existing(client: httpx.AsyncClient, database: Database) -> AsyncIterator[dict[str, Any]]:
    """cust-1 already has a conversation; the bad requests pretend to be them. After the
    test, every row count and that conversation must be exactly as they were."""
    body = inbound_body("msg-0", "cust-1", "the real message", name="Rosa")
    assert (await client.post(URL, content=body, headers=signed_headers(body))).status_code == 200
    before = await snapshot(database)
    yield before
    assert await snapshot(database) == before


def fields_of(response: httpx.Response) -> set[str]:
    return {f["field"] for f in response.json()["fields"]}


async def test_malformed_json_is_400_with_a_reason(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    for body in (b'{"message_id": "m1", ', b"", b"not json", b"\xff\xfe{}"):
        response = await post_api(client, body)
        assert response.status_code == 400, body
        assert "not valid JSON" in response.json()["error"]


FIELD_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"text": "hi"}, {"message_id", "sender"}),
    ({"message_id": "m1", "sender": {}, "text": "hi"}, {"sender.id"}),
    ({"message_id": 42, "sender": {"id": "c"}, "text": "hi"}, {"message_id"}),
    ({"message_id": "m1", "sender": {"id": 7}, "text": "hi"}, {"sender.id"}),
    ({"message_id": "m1", "sender": "c", "text": "hi"}, {"sender"}),
    ({"message_id": "m1", "sender": {"id": "c"}, "text": None}, {"text"}),
    ({"message_id": "m1", "sender": {"id": "c"}, "text": ["hi"]}, {"text"}),
    ({"message_id": "", "sender": {"id": ""}, "text": "hi"}, {"message_id", "sender.id"}),
    ({"message_id": 10**400, "sender": {"id": "c"}, "text": "hi"}, {"message_id"}),
    ({"message_id": "m1", "sender": {"id": "c"}, "text": "x" * 70_000}, {"text"}),
    (
        {"message_id": "m1", "sender": {"id": "c", "timezone": "Mars/Olympus"}, "text": ""},
        {"sender.timezone"},
    ),
    (
        {"message_id": "m1", "sender": {"id": "c"}, "text": "", "sent_at": "yesterday"},
        {"sent_at"},
    ),
    ({"message_id": "m1", "sender": {"id": "c"}, "text": "", "sent_at": 1e308}, {"sent_at"}),
    ({"message_id": "m1", "sender": {"id": "c"}, "text": "a\x00b"}, {"text"}),
]


async def test_missing_or_mistyped_fields_are_422_naming_them(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    for payload, fields in FIELD_CASES:
        response = await post_api(client, json.dumps(payload).encode())
        assert response.status_code == 422, (payload, response.text)
        assert fields_of(response) == fields, payload
        for name in fields:
            assert name in response.json()["error"]


ODD_BODIES = [
    b"[]",
    b"[1, 2]",
    b"null",
    b"42",
    b'"text"',
    b"1e999999",
    b'{"message_id": NaN, "sender": {"id": "c"}, "text": "hi"}',
    b'{"message_id": "m1", "sender": {"id": "c"}, "text": Infinity}',
    b'{"message_id": "m1", "sender": {"id": "\\ud800"}, "text": "hi"}',
    b'{"message_id": "m1", "sender": {"id": "c"}, "text": "\\u0000"}',
    b'{"message_id": "m1", "sender": {"id": "c", "name": "' + b"n" * 300 + b'"}, "text": ""}',
    b'{"message_id": "m1", "sender": {"id": "c", "email": 5}, "text": "hi"}',
    b'{"message_id": "m1", "sender": {"id": "c"}, "text": "hi", "sent_at": "2026-13-45"}',
    b'{"message_id": "m1", "sender": {"id": "c"}, "text": "hi", "sent_at": ""}',
    b'{"message_id": "m1", "sender": null, "text": "hi"}',
    b'{"message_id": "m1", "message_id": 5, "sender": {"id": "c"}, "text": "hi"}',
    b'{"a": ' * 10_000 + b"1" + b"}" * 10_000,
]


async def test_odd_bodies_are_refused_cleanly(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    for body in ODD_BODIES:
        response = await post_api(client, body)
        assert response.status_code in (400, 422), (body[:80], response.status_code, response.text)
        assert response.json()["error"]


async def test_unicode_and_empty_text_are_stored_as_sent(
    client: httpx.AsyncClient, database: Database
) -> None:
    name, text = "Zoë Ωmega 李雷", "héllo 👋 مرحبا\n你好"
    body = inbound_body("u-1", "cust-ü", text, name=name, timezone="Asia/Kuala_Lumpur")
    response = await post_api(client, body)
    assert response.status_code == 200, response.text
    empty = inbound_body("u-2", "cust-ü", "")
    assert (await post_api(client, empty)).status_code == 200
    async with database.read_session() as session:
        texts = (await session.execute(select(Message.text).order_by(Message.id))).scalars().all()
        customer = await session.get(Customer, response.json()["customer_id"])
    assert texts == [text, ""]
    assert customer is not None
    assert (customer.display_name, customer.timezone) == (name, "Asia/Kuala_Lumpur")


async def test_sent_at_without_offset_is_utc(client: httpx.AsyncClient, database: Database) -> None:
    for message_id, sent_at in (
        ("t-1", "2026-03-01T10:00:00"),
        ("t-2", "2026-03-01T12:00:00+02:00"),
    ):
        body = json.dumps(
            {"message_id": message_id, "sender": {"id": "c"}, "text": "x", "sent_at": sent_at}
        ).encode()
        assert (await post_api(client, body)).status_code == 200
    async with database.read_session() as session:
        stamps = (await session.execute(select(Message.sent_at).order_by(Message.id))).scalars()
        assert [s.isoformat() for s in stamps] == ["2026-03-01T10:00:00+00:00"] * 2


@ENGINE_NEUTRAL
async def test_a_bad_or_missing_signature_is_403(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    body = inbound_body("forged-1", "cust-1", "send my refund to another account")
    signatures: list[str | None] = [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        "md5=" + "0" * 32,
        sign(body, "another-secret-9876543210"),
        sign(body).removeprefix("sha256="),
        "sha1=" + sign(body).removeprefix("sha256="),
        sign(inbound_body("forged-1", "cust-1", "hello")),
    ]
    for signature in signatures:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Heliograph-Signature"] = signature
        response = await client.post(URL, content=body, headers=headers)
        assert response.status_code == 403, signature
        assert "signature" in response.json()["error"]


@ENGINE_NEUTRAL
async def test_a_signature_is_checked_before_the_body_is_read(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    response = await client.post(URL, content=b"{broken", headers={"X-Heliograph-Signature": "x"})
    assert response.status_code == 403  # an outsider learns nothing about our parser


@ENGINE_NEUTRAL
async def test_without_a_secret_nothing_is_accepted(
    client: httpx.AsyncClient, existing: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_API_INBOUND_SECRET", "")
    reset_settings()
    body = inbound_body("m-9", "cust-1")
    response = await client.post(URL, content=body, headers=signed_headers(body, secret=""))
    assert response.status_code == 403
    assert "no secret configured" in response.json()["error"]


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("HELIOGRAPH_MAX_BODY_BYTES", "2000")
    reset_settings()
    return 2000


@ENGINE_NEUTRAL
async def test_a_body_over_the_limit_is_413(
    client: httpx.AsyncClient, existing: dict[str, Any], small_limit: int
) -> None:
    body = inbound_body("big-1", "cust-1", "x" * small_limit)
    response = await post_api(client, body)
    assert response.status_code == 413
    assert "2000 bytes" in response.json()["error"]


@ENGINE_NEUTRAL
async def test_a_body_at_the_limit_is_accepted(
    client: httpx.AsyncClient, database: Database, small_limit: int
) -> None:
    body = inbound_body("fits-1", "cust-2", "")
    body = inbound_body("fits-1", "cust-2", "y" * (small_limit - len(body)))
    assert len(body) == small_limit
    assert (await post_api(client, body)).status_code == 200
    assert (await snapshot(database))["counts"]["Message"] == 1


@ENGINE_NEUTRAL
async def test_a_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, existing: dict[str, Any], small_limit: int
) -> None:
    body = inbound_body("big-2", "cust-1", "x" * (3 * small_limit))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    response = await client.post(URL, content=chunks(), headers=signed_headers(body))
    assert "content-length" not in response.request.headers  # the server had to count
    assert response.status_code == 413
    assert "2000 bytes" in response.json()["error"]


async def test_a_replay_with_other_content_changes_nothing(
    client: httpx.AsyncClient, existing: dict[str, Any]
) -> None:
    body = inbound_body("msg-0", "cust-1", "a different text under the same id")
    response = await post_api(client, body)
    assert response.status_code == 200 and response.json()["duplicate"] is True
