"""``Idempotency-Key`` on reply and notes: a retry gets the first answer, nothing twice.

Replies go out through the outbox to the provider sandbox (a real HTTP receiver in its own
process), so "sent once" is what the receiver got, not a row count alone."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from heliograph.db import Database, utcnow
from heliograph.models import IdempotencyRecord
from inbox.models import Message, Note
from inbox.periodic import purge_idempotency_records
from tests.utils.db import count
from tests.utils.factories import member_with_token, receive
from tests.utils.jobs import run_jobs
from tests.utils.sandbox import API_ENV, Receiver

API = "/api/v1"
SANDBOX_ENV = API_ENV  # replies go to the sandbox's receiver, which checks their signatures


def keyed(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


async def test_a_reply_retried_ten_times_at_once_is_sent_once(
    client: httpx.AsyncClient, database: Database, receiver: Receiver
) -> None:
    conv = await receive(database, "m1", "cust-idem")
    _, auth = await member_with_token(database)
    path = f"{API}/conversations/{conv.conversation_id}/reply"

    answers = await asyncio.gather(
        *(
            client.post(
                path, json={"text": "Your refund is on its way"}, headers=keyed(auth, "k-1")
            )
            for _ in range(10)
        )
    )

    done = [a for a in answers if a.status_code == 202]
    busy = [a for a in answers if a.status_code == 409]
    assert len(done) + len(busy) == 10, [(a.status_code, a.text) for a in answers]
    assert done, "at least the first request succeeds"
    assert all(a.json() == done[0].json() for a in done)
    assert all("still being processed" in a.json()["error"] for a in busy)
    assert await count(database, Message, Message.direction == "out") == 1
    await run_jobs(database)
    sent = await receiver.replies()
    assert [r["text"] for r in sent] == ["Your refund is on its way"]
    assert sent[0]["message_id"] == done[0].json()["id"]


async def test_a_retry_after_success_gets_the_first_answer(
    client: httpx.AsyncClient, database: Database
) -> None:
    conv = await receive(database, "m1", "cust-idem")
    _, auth = await member_with_token(database)
    path = f"{API}/conversations/{conv.conversation_id}/reply"

    first = await client.post(path, json={"text": "On its way"}, headers=keyed(auth, "k-2"))
    # The same request, re-serialised by the client: still the same request.
    again = await client.post(
        path,
        content=b'{ "text" : "On its way" }',
        headers={**keyed(auth, "k-2"), "Content-Type": "application/json"},
    )

    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(database, Message, Message.direction == "out") == 1
    # Without a key nothing is remembered: a second reply is a second reply.
    plain = await client.post(path, json={"text": "On its way"}, headers=auth)
    assert plain.status_code == 202 and plain.json()["id"] != first.json()["id"]
    async with database.read_session() as session:
        (record,) = (await session.execute(select(IdempotencyRecord))).scalars().all()
    assert (record.key, record.customer_id) == ("k-2", conv.customer_id)


async def test_the_same_key_for_another_request_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    conv = await receive(database, "m1", "cust-idem")
    other = await receive(database, "m2", "cust-other")
    _, auth = await member_with_token(database)
    path = f"{API}/conversations/{conv.conversation_id}/reply"
    assert (
        await client.post(path, json={"text": "A"}, headers=keyed(auth, "k-3"))
    ).status_code == 202

    for url, body in (
        (path, {"text": "B"}),  # another body
        (f"{API}/conversations/{other.conversation_id}/reply", {"text": "A"}),  # another path
        (f"{API}/conversations/{conv.conversation_id}/notes", {"text": "A"}),
    ):
        refused = await client.post(url, json=body, headers=keyed(auth, "k-3"))
        assert refused.status_code == 422, (url, refused.text)
        assert "used for a different request" in refused.json()["error"]
    assert await count(database, Message, Message.direction == "out") == 1
    assert await count(database, Note) == 0

    # Keys belong to the member who sent them: another agent's "k-3" is their own.
    _, bob = await member_with_token(database, name="Bob Agent")
    theirs = await client.post(path, json={"text": "B"}, headers=keyed(bob, "k-3"))
    assert theirs.status_code == 202
    assert await count(database, Message, Message.direction == "out") == 2


async def test_notes_are_idempotent_too(client: httpx.AsyncClient, database: Database) -> None:
    conv = await receive(database, "m1", "cust-idem")
    _, auth = await member_with_token(database)
    path = f"{API}/conversations/{conv.conversation_id}/notes"

    answers = await asyncio.gather(
        *(
            client.post(path, json={"text": "VIP, be quick"}, headers=keyed(auth, "n-1"))
            for _ in range(5)
        )
    )

    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {201, 409} and 201 in codes, [a.text for a in answers]
    assert len({a.text for a in answers if a.status_code == 201}) == 1
    assert await count(database, Note) == 1


async def test_a_failed_request_keeps_nothing_so_its_retry_runs_again(
    client: httpx.AsyncClient, database: Database
) -> None:
    conv = await receive(database, "m1", "cust-idem")
    _, auth = await member_with_token(database)
    path = f"{API}/conversations/{conv.conversation_id}/reply"

    empty = await client.post(path, json={"text": "   "}, headers=keyed(auth, "k-4"))
    missing = await client.post(
        f"{API}/conversations/999999/reply", json={"text": "x"}, headers=keyed(auth, "k-5")
    )

    assert empty.status_code == 409 and "needs some text" in empty.json()["error"]
    assert missing.status_code == 404
    assert await count(database, IdempotencyRecord) == 0
    fixed = await client.post(
        f"{API}/conversations/{conv.conversation_id}/reply",
        json={"text": "x"},
        headers=keyed(auth, "k-5"),
    )
    assert fixed.status_code == 202


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\there"],
    ids=["empty", "too-long", "latin-1", "control"],
)
async def test_a_malformed_key_is_400(
    client: httpx.AsyncClient, database: Database, key: str
) -> None:
    conv = await receive(database, "m1", "cust-idem")
    _, auth = await member_with_token(database)
    headers = {**auth, "Idempotency-Key": key.encode("latin-1")}  # type: ignore[dict-item]

    refused = await client.post(
        f"{API}/conversations/{conv.conversation_id}/reply", json={"text": "hi"}, headers=headers
    )

    assert refused.status_code == 400, refused.text
    assert "Idempotency-Key must be 1 to 255 printable ASCII" in refused.json()["error"]
    assert await count(database, Message, Message.direction == "out") == 0


async def test_records_expire_and_are_purged(client: httpx.AsyncClient, database: Database) -> None:
    conv = await receive(database, "m1", "cust-idem")
    _, auth = await member_with_token(database)
    path = f"{API}/conversations/{conv.conversation_id}/reply"
    first = await client.post(path, json={"text": "hi"}, headers=keyed(auth, "k-6"))
    second = await client.post(path, json={"text": "hi"}, headers=keyed(auth, "k-7"))
    assert first.status_code == second.status_code == 202
    async with database.session() as session:
        old = utcnow() - timedelta(hours=25)  # past the default 24 h
        await session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.key == "k-6").values(created_at=old)
        )
        await session.commit()

    # An expired key no longer answers: the request runs as a new one.
    again = await client.post(path, json={"text": "hi"}, headers=keyed(auth, "k-6"))
    assert again.status_code == 202 and again.json()["id"] != first.json()["id"]
    async with database.session() as session:
        await session.execute(
            update(IdempotencyRecord).where(IdempotencyRecord.key == "k-6").values(created_at=old)
        )
        await session.commit()
    assert await purge_idempotency_records(database) == 1
    async with database.read_session() as session:
        keys = (await session.execute(select(IdempotencyRecord.key))).scalars().all()
    assert keys == ["k-7"]
