"""A request whose transaction PostgreSQL rolls back to break a deadlock with concurrent
work is told so (503, Retry-After), with nothing stored; the same request then passes.

Seen under load (bench/pipeline.py, PostgreSQL at 139 msg/s): agents' replies through the
REST API met routing and delivery transactions in a deadlock, and answered a 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select, text

from heliograph.db import Database
from heliograph.models import IdempotencyRecord
from inbox.models import Message
from tests.utils.factories import member_with_token, receive

REPLY = "Your refund is on its way."


async def _blocked_on_a_lock(conn: object) -> bool:
    # (A transaction sees one snapshot of pg_stat_activity unless it asks for a new one.)
    await conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")  # type: ignore[attr-defined]
    waiting = await conn.exec_driver_sql(  # type: ignore[attr-defined]
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return bool(waiting.scalar())


async def _replies(database: Database) -> int:
    async with database.read_session() as session:
        found = await session.execute(select(func.count()).where(Message.text == REPLY))
        return int(found.scalar_one())


async def test_a_reply_rolled_back_by_a_deadlock_is_a_503_with_nothing_stored(
    client: httpx.AsyncClient, database: Database
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer at a time: its transactions never deadlock")
    member, auth = await member_with_token(database)
    cid = (await receive(database, "m1", "cust-1", name="Ana Silva")).conversation_id
    headers = {**auth, "Idempotency-Key": "reply-1"}
    url = f"/api/v1/conversations/{cid}/reply"

    # Concurrent work holds the conversation's row; the reply takes its idempotency key,
    # then waits for that row (its message refers to the conversation). The other work
    # then wants the same key: each waits for the other. PostgreSQL rolls back the one
    # that waited first (deadlock_timeout), the reply.
    async with database.engine.connect() as other:
        await other.begin()
        await other.exec_driver_sql("SET LOCAL deadlock_timeout = '10s'")
        await other.execute(
            text("SELECT id FROM conversation WHERE id = :id FOR UPDATE"), {"id": cid}
        )
        answer = asyncio.create_task(client.post(url, json={"text": REPLY}, headers=headers))
        for _ in range(100):
            if await _blocked_on_a_lock(other):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the reply never waited for the conversation's row")
        await other.execute(
            text(
                "INSERT INTO idempotency_record (scope, key, fingerprint, status_code, "
                "created_at) VALUES (:scope, 'reply-1', 'other', 0, now())"
            ),
            {"scope": f"member:{member.id}"},
        )
        await other.rollback()
    refused = await answer

    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert "deadlock detected" in refused.json()["error"]
    assert "nothing was stored" in refused.json()["error"]
    assert await _replies(database) == 0
    async with database.read_session() as session:
        kept = await session.execute(select(func.count()).select_from(IdempotencyRecord))
        assert kept.scalar_one() == 0  # the key is free for the retry

    retried = await client.post(url, json={"text": REPLY}, headers=headers)
    assert retried.status_code == 202, retried.text
    assert await _replies(database) == 1
