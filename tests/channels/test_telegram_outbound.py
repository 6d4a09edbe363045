"""Replies and media through aiogram's real Bot against the sandbox's fake Bot API, which
runs as its own process: 4,096-character parts in order and never resent, 429 retry_after
honoured, a blocked bot marks the customer unreachable, voice notes fetched and kept."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import struct
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from channels.telegram import TelegramChannel, close_bot
from crm_core.models import Identity
from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import reply
from inbox.models import Attachment, Message
from sandbox.samples import ogg_crc, silent_voice_note
from tests.utils.factories import receive
from tests.utils.http import TELEGRAM_TOKEN as TOKEN
from tests.utils.http import TELEGRAM_WEBHOOK_SECRET as WEBHOOK_SECRET
from tests.utils.jobs import run_jobs
from tests.utils.processes import free_port, start_heliograph
from tests.utils.samples import sample
from tests.utils.sandbox import TELEGRAM_ENV

CHAT = "1111111"
# 1,500 words of 5 characters and a space: 8,999 characters, three parts at 4,096.
LONG_REPLY = " ".join(f"w{i:04d}" for i in range(1500))


SANDBOX_ENV = TELEGRAM_ENV  # the fake Bot API, its own process for the module


class FakeTelegram:
    """The test's handle on the sandbox: what it received, and what it should do next."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)

    async def calls(self, method: str) -> list[dict[str, Any]]:
        answer = await self.http.get("/_sandbox/calls", params={"provider": "telegram"})
        return [c["params"] for c in answer.json() if c["method"] == method]

    async def texts(self) -> list[str]:
        return [c["text"] for c in await self.calls("sendMessage")]

    async def fail(self, mode: str, seconds: float, retry_after: int = 1) -> None:
        body = {"provider": "telegram", "mode": mode, "seconds": seconds}
        (await self.http.post("/_sandbox/fail", json={**body, "retry_after": retry_after}))

    async def script(self, method: str, *answers: str) -> None:
        body = {"method": method, "answers": list(answers)}
        (await self.http.post("/_sandbox/telegram/script", json=body)).raise_for_status()

    async def block(self, chat_id: str, blocked: bool = True) -> None:
        body = {"chat_id": int(chat_id), "blocked": blocked}
        (await self.http.post("/_sandbox/telegram/block", json=body)).raise_for_status()

    async def add_file(self, file_id: str, data: bytes, file_path: str) -> None:
        body = {"file_id": file_id, "data_b64": base64.b64encode(data).decode()}
        body |= {"file_path": file_path, "content_type": "audio/ogg"}
        (await self.http.post("/_sandbox/telegram/files", json=body)).raise_for_status()

    async def reset(self) -> None:
        await self.http.delete("/_sandbox/calls")
        await self.http.delete("/_sandbox/fail", params={"provider": "telegram"})
        await self.http.delete("/_sandbox/telegram")


@pytest.fixture
async def telegram(
    database: Database, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[FakeTelegram]:
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_API_BASE", f"{sandbox_url}/telegram")
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    fake = FakeTelegram(sandbox_url)
    await fake.reset()
    yield fake
    await fake.reset()
    await fake.http.aclose()
    await close_bot()  # its HTTP session belongs to this test's event loop


async def customer_conversation(database: Database) -> int:
    return (await receive(database, f"{CHAT}:1", CHAT, channel="telegram")).conversation_id


async def queue_reply(database: Database, conversation_id: int, text: str) -> int:
    async with database.session() as session:
        message = await reply(session, conversation_id, text, author_id=None)
        await session.commit()
    assert message.id is not None
    return message.id


async def message(database: Database, message_id: int) -> Message:
    async with database.read_session() as session:
        found = await session.get(Message, message_id)
    assert found is not None
    return found


async def deliver_job(database: Database, message_id: int) -> Job:
    async with database.read_session() as session:
        stmt = select(Job).where(Job.dedupe_key == f"deliver:{message_id}")
        return (await session.execute(stmt)).scalar_one()


async def delivery(database: Database, message_id: int) -> tuple[str, int]:
    """The reply's outbox job: ``(status, attempts)`` (other jobs may run beside it)."""
    job = await deliver_job(database, message_id)
    return job.status, job.attempts


async def fetch_job(database: Database) -> Job:
    async with database.read_session() as session:
        stmt = select(Job).where(Job.kind == "attachment.fetch")
        return (await session.execute(stmt)).scalar_one()


async def make_due(database: Database, job_id: int) -> None:
    async with database.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        job.run_at = utcnow()
        await session.commit()


async def work_until(database: Database, done: Callable[[], Any], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await run_jobs(database)
        if await done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the outbox did not get there in time")


def stored_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def parts_of(text: str) -> list[str]:
    return TelegramChannel().split_text(text)


# --- splitting ----------------------------------------------------------------------------


def test_long_text_is_cut_at_word_boundaries_within_4096() -> None:
    parts = parts_of(LONG_REPLY)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == LONG_REPLY


def test_emoji_heavy_text_fits_telegrams_utf16_count() -> None:
    text = "\U0001f600" * 3000  # 3,000 characters, 6,000 UTF-16 code units
    parts = parts_of(text)
    assert "".join(parts) == text
    assert [len(p.encode("utf-16-le")) // 2 <= 4096 for p in parts] == [True, True]


# --- delivery -----------------------------------------------------------------------------


async def test_a_9000_character_reply_arrives_as_three_messages_in_order(
    database: Database, telegram: FakeTelegram
) -> None:
    conversation_id = await customer_conversation(database)
    message_id = await queue_reply(database, conversation_id, LONG_REPLY)

    await run_jobs(database)
    assert await delivery(database, message_id) == ("done", 1)

    calls = await telegram.calls("sendMessage")
    assert [c["chat_id"] for c in calls] == [CHAT] * 3
    assert [c["text"] for c in calls] == parts_of(LONG_REPLY)
    sent = await message(database, message_id)
    assert sent.delivery_status == "sent" and sent.delivery_error is None
    assert sent.external_id is not None and sent.external_id.startswith(f"{CHAT}:")
    await run_jobs(database)  # nothing due: the reply never leaves twice
    assert len(await telegram.calls("sendMessage")) == 3


async def test_a_failure_after_the_first_part_does_not_resend_it(
    database: Database, telegram: FakeTelegram
) -> None:
    conversation_id = await customer_conversation(database)
    await telegram.script("sendMessage", "ok", "500")  # part 1 accepted, part 2 fails once
    message_id = await queue_reply(database, conversation_id, LONG_REPLY)

    await run_jobs(database, rounds=1)
    assert await delivery(database, message_id) == ("pending", 1)  # to be tried again
    waiting = await message(database, message_id)
    assert waiting.delivery_status == "queued"
    assert "Internal Server Error" in (waiting.delivery_error or "")
    assert await telegram.texts() == parts_of(LONG_REPLY)[:1]

    async def sent() -> bool:
        return (await message(database, message_id)).delivery_status == "sent"

    await work_until(database, sent)
    assert await telegram.texts() == parts_of(LONG_REPLY)  # each part exactly once
    assert (await deliver_job(database, message_id)).attempts == 2


async def test_telegrams_retry_after_is_honoured(
    database: Database, telegram: FakeTelegram
) -> None:
    conversation_id = await customer_conversation(database)
    await telegram.script("sendMessage", "ok", "429:7")
    message_id = await queue_reply(database, conversation_id, LONG_REPLY)
    before = utcnow()

    await run_jobs(database)
    after = utcnow()
    job = await deliver_job(database, message_id)
    assert (job.status, job.attempts) == ("pending", 1)
    # 7 s after Telegram said so, which happened between ``before`` and ``after``
    assert before + timedelta(seconds=7) <= job.run_at <= after + timedelta(seconds=7)
    assert "retry after 7" in ((await message(database, message_id)).delivery_error or "")
    await run_jobs(database)
    assert await delivery(database, message_id) == ("pending", 1)  # not before its time

    await make_due(database, job.id)  # (instead of waiting the 7 s)
    await run_jobs(database)
    assert await delivery(database, message_id) == ("done", 2)
    assert await telegram.texts() == parts_of(LONG_REPLY)
    assert (await message(database, message_id)).delivery_status == "sent"


async def test_an_outage_with_a_rate_limit_answer_is_retried_at_its_time(
    database: Database, telegram: FakeTelegram
) -> None:
    conversation_id = await customer_conversation(database)
    await telegram.fail("429", seconds=60, retry_after=5)
    message_id = await queue_reply(database, conversation_id, "short one")
    before = utcnow()
    await run_jobs(database)
    job = await deliver_job(database, message_id)
    assert (job.status, job.attempts) == ("pending", 1)
    assert timedelta(seconds=4.5) <= job.run_at - before <= timedelta(seconds=6)
    assert await telegram.texts() == []


async def test_a_blocked_bot_marks_the_customer_unreachable_and_fails_the_reply(
    database: Database, telegram: FakeTelegram
) -> None:
    conversation_id = await customer_conversation(database)
    await telegram.block(CHAT)
    first = await queue_reply(database, conversation_id, "are you there?")

    await run_jobs(database)
    assert await delivery(database, first) == ("dead", 1)  # refused, not retried forever

    failed = await message(database, first)
    assert failed.delivery_status == "failed"
    assert "bot was blocked by the user" in (failed.delivery_error or "")
    async with database.read_session() as session:
        identity = (
            await session.execute(select(Identity).where(Identity.external_id == CHAT))
        ).scalar_one()
    assert identity.unreachable_reason == "Forbidden: bot was blocked by the user"

    # Later replies are refused without asking Telegram (it would accept now: unblocked).
    await telegram.block(CHAT, blocked=False)
    second = await queue_reply(database, conversation_id, "hello?")
    await run_jobs(database)
    assert await delivery(database, second) == ("dead", 1)
    assert "unreachable on telegram" in ((await message(database, second)).delivery_error or "")
    assert await telegram.calls("sendMessage") == []


async def test_an_unreachable_bot_api_means_retry(
    database: Database, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_API_BASE", f"http://127.0.0.1:{free_port()}")
    reset_settings()
    conversation_id = await customer_conversation(database)
    message_id = await queue_reply(database, conversation_id, "anyone?")
    await run_jobs(database, rounds=1)
    assert await delivery(database, message_id) == ("pending", 1)
    assert "telegram unavailable" in ((await message(database, message_id)).delivery_error or "")


# --- media --------------------------------------------------------------------------------


async def test_a_voice_note_is_fetched_through_the_bot_api_and_kept(
    database: Database, telegram: FakeTelegram, client: httpx.AsyncClient
) -> None:
    update = sample("telegram", "voice")
    file_id = update["message"]["voice"]["file_id"]
    audio = silent_voice_note()
    await telegram.add_file(file_id, audio, "voice/file_7.oga")
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    assert (await client.post("/webhooks/telegram", json=update, headers=headers)).is_success

    await run_jobs(database)
    assert (await fetch_job(database)).status == "done"

    async with database.read_session() as session:
        (attachment,) = (await session.execute(select(Attachment))).scalars().all()
    assert attachment.storage_path is not None
    assert stored_bytes(attachment.storage_path) == audio
    assert (attachment.size, attachment.filename) == (len(audio), "file_7.oga")
    assert [c["file_id"] for c in await telegram.calls("getFile")] == [file_id]
    assert await telegram.calls("download") == [{"file_path": "voice/file_7.oga"}]


async def test_a_file_telegram_does_not_know_is_given_up_on(
    database: Database, telegram: FakeTelegram, client: httpx.AsyncClient
) -> None:
    update = sample("telegram", "document")
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    assert (await client.post("/webhooks/telegram", json=update, headers=headers)).is_success
    await run_jobs(database)
    job = await fetch_job(database)
    assert job.status == "dead" and "invalid file_id" in (job.last_error or "")


def test_the_sandbox_voice_note_is_a_well_formed_ogg_opus_file() -> None:
    data = silent_voice_note()
    pages, offset = [], 0
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS"
        flags, granule, _, seq, crc, count = struct.unpack_from("<BqIIIB", data, offset + 5)
        body_len = sum(data[offset + 27 : offset + 27 + count])
        end = offset + 27 + count + body_len
        page = data[offset:end]
        assert ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == crc
        pages.append((flags, granule, seq, page[27 + count :]))
        offset = end
    assert [p[2] for p in pages] == [0, 1, 2]
    assert pages[0][0] == 0x02 and pages[0][3].startswith(b"OpusHead")  # beginning of stream
    assert pages[1][3].startswith(b"OpusTags")
    assert pages[2][0] == 0x04 and pages[2][1] == 312 + 50 * 960  # one second at 48 kHz
    assert len(data) < 1024


async def test_a_worker_process_delivers_and_stops_with_its_bot_session_closed(
    database: Database, telegram: FakeTelegram, tmp_path: Path
) -> None:
    """``heliograph worker`` sends through the Bot and, on SIGTERM, closes the Bot's HTTP
    session like ``serve`` does: no "Unclosed client session" in its log."""
    conversation_id = await customer_conversation(database)
    env = {k: v for k, v in os.environ.items() if k.startswith("HELIOGRAPH_")}
    worker = start_heliograph(["worker", "--no-scheduler"], env, tmp_path / "worker.log")
    try:
        message_id = await queue_reply(database, conversation_id, "sent by the worker")
        deadline = time.monotonic() + 60
        while (await message(database, message_id)).delivery_status != "sent":
            assert worker.proc.poll() is None, worker.log()
            assert time.monotonic() < deadline, worker.log()
            await asyncio.sleep(0.2)
        assert await telegram.texts() == ["sent by the worker"]
    finally:
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.proc.wait(30)
    assert code == 0, worker.log()
    assert "Unclosed" not in worker.log(), worker.log()
