"""End to end, as separate processes: ``heliograph serve`` and the sandbox's fake Bot API.

A Telegram user writes (the sandbox delivers the update to the webhook that ``serve`` set
at start-up, or hands it to ``getUpdates`` in polling mode), an agent answers through the
REST API, and the fake Bot API receives ``sendMessage`` for the right chat. Then a minute
of provider outage: every reply written meanwhile arrives once, in order, afterwards.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import Customer
from heliograph.db import Database
from heliograph.models import Job
from inbox.models import Attachment, Conversation, Message
from tests.utils.factories import member_with_token
from tests.utils.http import TELEGRAM_TOKEN as TOKEN
from tests.utils.http import TELEGRAM_WEBHOOK_SECRET as WEBHOOK_SECRET
from tests.utils.processes import Service, eventually, free_port, start_heliograph
from tests.utils.sandbox import TELEGRAM_ENV

pytestmark = pytest.mark.slow


SANDBOX_ENV = TELEGRAM_ENV
SANDBOX_RESETS = ("/_sandbox/fail?provider=telegram", "/_sandbox/telegram")


def serve(
    tmp_path: Path, database_url: str, sandbox: httpx.AsyncClient, *args: str, **env: str
) -> Service:
    port = free_port()
    settings = {
        "HELIOGRAPH_DATABASE_URL": database_url,
        "HELIOGRAPH_TELEGRAM_BOT_TOKEN": TOKEN,
        "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HELIOGRAPH_TELEGRAM_API_BASE": f"{sandbox.base_url}/telegram",
        "HELIOGRAPH_MEDIA_DIR": str(tmp_path / "media"),
        **env,
    }
    if "--telegram-polling" not in args:
        settings["HELIOGRAPH_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    return start_heliograph(["serve", *args], settings, tmp_path / "serve.log", port)


async def calls(sandbox: httpx.AsyncClient, method: str) -> list[dict[str, Any]]:
    answer = await sandbox.get("/_sandbox/calls", params={"provider": "telegram", "method": method})
    return [c["params"] for c in answer.json()]


def first_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


async def say(sandbox: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await sandbox.post("/_sandbox/say/telegram", json=body)
    assert answer.is_success, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def conversation_of(database: Database, chat_id: str) -> int | None:
    async with database.read_session() as session:
        stmt = select(Message.conversation_id).where(
            Message.channel == "telegram", Message.provider_message_id.startswith(f"{chat_id}:")
        )
        return (await session.execute(stmt)).scalars().first()


async def agent_reply(url: str, auth: dict[str, str], conversation_id: int, text: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.post(
            f"/api/v1/conversations/{conversation_id}/reply", json={"text": text}, headers=auth
        )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


async def test_a_customer_writes_an_agent_replies_and_telegram_gets_the_answer(
    sqlite_url: str, sqlite_database: Database, sandbox: httpx.AsyncClient, tmp_path: Path
) -> None:
    service = serve(tmp_path, sqlite_url, sandbox)
    try:
        # At start-up serve pointed the (fake) Bot API at its webhook, with the secret.
        (webhook,) = await eventually(
            "setWebhook", lambda: calls(sandbox, "setWebhook"), 20, service
        )
        assert webhook["url"] == f"{service.url}/webhooks/telegram"
        assert webhook["secret_token"] == WEBHOOK_SECRET

        written = await say(
            sandbox,
            text="Olá! Where is my order?",
            **{"from": "5550001"},
            first_name="Rosa",
            last_name="Costa",
            language_code="pt",
        )
        assert written["heliograph"]["stored"] == 1
        await say(sandbox, voice=True, **{"from": "5550001"})
        conversation_id = await conversation_of(sqlite_database, "5550001")
        assert conversation_id is not None
        async with sqlite_database.read_session() as session:
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            customer = await session.get(Customer, conversation.customer_id)
        assert customer is not None
        assert (customer.display_name, customer.language) == ("Rosa Costa", "pt")

        _, auth = await member_with_token(sqlite_database)
        await agent_reply(service.url, auth, conversation_id, "Your order ships today.")

        async def answered() -> list[dict[str, Any]]:
            return await calls(sandbox, "sendMessage")

        (sent,) = await eventually("sendMessage", answered, 20, service)
        assert (sent["chat_id"], sent["text"]) == ("5550001", "Your order ships today.")

        async def voice_kept() -> str | None:
            async with sqlite_database.read_session() as session:
                return (await session.execute(select(Attachment.storage_path))).scalar()

        path = await eventually("stored voice note", voice_kept, 20, service)
        assert first_bytes(path) == b"OggS"
    finally:
        service.stop()


async def test_long_polling_needs_no_public_url(
    sqlite_url: str, sqlite_database: Database, sandbox: httpx.AsyncClient, tmp_path: Path
) -> None:
    service = serve(tmp_path, sqlite_url, sandbox, "--telegram-polling")
    try:
        await eventually("deleteWebhook", lambda: calls(sandbox, "deleteWebhook"), 20, service)
        assert await calls(sandbox, "setWebhook") == []

        queued = await say(sandbox, text="hello from polling", **{"from": "5550002"})
        assert queued["queued"] is True  # no webhook: it waits for getUpdates

        async def stored() -> int | None:
            return await conversation_of(sqlite_database, "5550002")

        conversation_id = await eventually("polled message", stored, 20, service)
        _, auth = await member_with_token(sqlite_database)
        await agent_reply(service.url, auth, conversation_id, "polling works")
        (sent,) = await eventually("sendMessage", lambda: calls(sandbox, "sendMessage"), 20)
        assert (sent["chat_id"], sent["text"]) == ("5550002", "polling works")

        async def confirmed() -> bool:  # the next getUpdates carried a higher offset
            return (await sandbox.get("/_sandbox/telegram")).json()["pending_updates"] == 0

        await eventually("offset confirmation", confirmed, 40, service)
    finally:
        service.stop()


OUTAGE_500_S = 30
OUTAGE_429_S = 30


async def test_replies_written_during_a_minute_of_outage_arrive_once_in_order(
    sqlite_url: str, sqlite_database: Database, sandbox: httpx.AsyncClient, tmp_path: Path
) -> None:
    service = serve(
        tmp_path,
        sqlite_url,
        sandbox,
        # The backoff cap is 3 s instead of 600 s so retries keep coming through the outage
        # and delivery resumes seconds after it ends (the test stays near its one minute).
        # A 3 s cap spends the default 8 tries in about 20 s, so the try budget is raised
        # to stand for production's, where 8 tries with a 600 s cap span over 8 minutes.
        HELIOGRAPH_JOB_BACKOFF_BASE_S="0.5",
        HELIOGRAPH_JOB_BACKOFF_MAX_S="3",
        HELIOGRAPH_JOB_MAX_ATTEMPTS="100",
    )
    try:
        await eventually("setWebhook", lambda: calls(sandbox, "setWebhook"), 20, service)
        chats = {"A": "6000001", "B": "6000002"}
        conversations = {}
        for key, chat in chats.items():
            await say(sandbox, text=f"customer {key} here", **{"from": chat})
            conversations[key] = await conversation_of(sqlite_database, chat)
        _, auth = await member_with_token(sqlite_database)
        written: dict[str, list[str]] = {"A": [], "B": []}

        async def write(key: str, text: str) -> None:
            await agent_reply(service.url, auth, conversations[key], text)
            written[key].append(text)

        start = time.monotonic()

        async def at(second: float) -> None:
            await asyncio.sleep(max(0.0, start + second - time.monotonic()))

        fail = {"provider": "telegram", "mode": "500", "seconds": OUTAGE_500_S}
        (await sandbox.post("/_sandbox/fail", json=fail)).raise_for_status()
        await write("A", "A1: looking into it")
        await write("B", "B1: hello")
        await write("A", "A2: found your order")
        await at(10)
        await write("B", "B2: one moment")
        await at(20)
        await write("A", "A3: it left the warehouse")
        # A little before the 500s end, 429s with retry_after take over (replacing them,
        # so no retry slips through a gap between the two).
        await at(OUTAGE_500_S - 1)
        outage_over = time.time() + OUTAGE_429_S + 1
        fail = {"provider": "telegram", "mode": "429", "retry_after": 2}
        fail["seconds"] = OUTAGE_429_S + 1
        (await sandbox.post("/_sandbox/fail", json=fail)).raise_for_status()
        await write("B", "B3: sorted")
        await at(OUTAGE_500_S + 15)
        await write("A", "A4: anything else?")
        await at(OUTAGE_500_S + OUTAGE_429_S)

        async def all_sent() -> bool:
            async with sqlite_database.read_session() as session:
                stmt = select(Message.delivery_status).where(Message.direction == "out")
                statuses = (await session.execute(stmt)).scalars().all()
            return len(statuses) == 7 and set(statuses) == {"sent"}

        await eventually("every reply sent", all_sent, 30, service)

        answer = await sandbox.get("/_sandbox/calls", params={"provider": "telegram"})
        sent = [c for c in answer.json() if c["method"] == "sendMessage"]
        for key, chat in chats.items():
            arrived = [c["params"]["text"] for c in sent if c["params"]["chat_id"] == chat]
            assert arrived == written[key], f"conversation {key}: {arrived}"  # once, in order
        assert min(c["at"] for c in sent) >= outage_over - 0.5, "nothing got through early"
        assert (await sandbox.get("/_sandbox/telegram")).json()["failed_calls"] > 10
        async with sqlite_database.read_session() as session:
            dead = (
                await session.execute(
                    select(Job).where(Job.kind == "outbox.deliver", Job.status == "dead")
                )
            ).all()
        assert dead == []
    finally:
        service.stop()
