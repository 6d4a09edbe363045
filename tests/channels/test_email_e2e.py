"""End to end, as separate processes: ``heliograph serve`` with its SMTP listener, and the
sandbox with its SMTP sink standing in for the outbound relay.

A customer's mail arrives over real SMTP (stored before the 250), an agent answers
through the REST API, the sink receives the reply threaded under the customer's mail, and
the customer's answer (written by the sandbox's mail client, quoting ours) lands in the
same conversation. Then the relay is busy for a while (451): the reply goes out once after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from sqlalchemy import select

from heliograph.db import Database
from inbox.models import Message
from tests.utils.factories import member_with_token
from tests.utils.mail import GMAIL_FIRST_ID, SECRET, SUPPORT
from tests.utils.processes import Service, free_port, start_heliograph
from tests.utils.samples import email_sample

pytestmark = pytest.mark.slow


PORTS = {"sink": free_port(), "listen": free_port()}  # the sandbox's SMTP sink, serve's listener
SANDBOX_ENV = {
    "HELIOGRAPH_SANDBOX_SMTP_PORT": str(PORTS["sink"]),
    "HELIOGRAPH_SMTP_LISTEN_PORT": str(PORTS["listen"]),
    "HELIOGRAPH_EMAIL_ADDRESS": SUPPORT,
}
SANDBOX_RESETS = ("/_sandbox/fail?provider=email",)


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return PORTS


def serve(tmp_path: Path, database_url: str, ports: dict[str, int]) -> Service:
    return start_heliograph(
        ["serve"],
        {
            "HELIOGRAPH_DATABASE_URL": database_url,
            "HELIOGRAPH_EMAIL_ADDRESS": SUPPORT,
            "HELIOGRAPH_EMAIL_WEBHOOK_SECRET": SECRET,
            "HELIOGRAPH_SMTP_LISTEN_PORT": str(ports["listen"]),
            "HELIOGRAPH_SMTP_HOST": "127.0.0.1",
            "HELIOGRAPH_SMTP_PORT": str(ports["sink"]),
            "HELIOGRAPH_MEDIA_DIR": str(tmp_path / "media"),
            "HELIOGRAPH_JOB_BACKOFF_BASE_S": "0.1",
            "HELIOGRAPH_JOB_BACKOFF_MAX_S": "0.5",
        },
        tmp_path / "serve.log",
        free_port(),
    )


async def eventually(
    what: str, check: Callable[[], Awaitable[Any]], service: Service, within: float = 20
) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert service.proc.poll() is None, f"serve died:\n{service.log()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {within}s\n{service.log()[-3000:]}")
        await asyncio.sleep(0.2)


async def mails(sandbox: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await sandbox.get("/_sandbox/calls", params={"provider": "email"})
    return [call["params"] for call in answer.json()]


async def inbound(database: Database) -> list[Message]:
    async with database.read_session() as session:
        stmt = select(Message).where(Message.direction == "in").order_by(Message.id)
        return list((await session.execute(stmt)).scalars().all())


async def status_of(database: Database, message_id: int) -> str:
    async with database.read_session() as session:
        message = await session.get(Message, message_id)
    assert message is not None
    return message.delivery_status


async def agent_reply(
    service: Service, auth: dict[str, str], conversation_id: int, text: str
) -> int:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        answer = await http.post(
            f"/api/v1/conversations/{conversation_id}/reply", json={"text": text}, headers=auth
        )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


async def test_mail_in_over_smtp_reply_out_threaded_and_the_answer_threads_back(
    sqlite_url: str,
    sqlite_database: Database,
    sandbox: httpx.AsyncClient,
    ports: dict[str, int],
    tmp_path: Path,
) -> None:
    service = serve(tmp_path, sqlite_url, ports)
    try:
        _, auth = await member_with_token(sqlite_database)
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ports["listen"]) as smtp:
            _, answer = await smtp.sendmail(
                "jane.doe@gmail.com", [SUPPORT], email_sample("gmail_first")
            )
        assert answer.startswith("2.0.0 Stored")
        (first,) = await inbound(sqlite_database)  # committed before the 250
        assert first.provider_message_id == GMAIL_FIRST_ID

        reply_id = await agent_reply(service, auth, first.conversation_id, "It left on Friday.")

        (sent,) = await eventually("mail at the sink", lambda: mails(sandbox), service)
        assert sent["rcpt_to"] == ["jane.doe@gmail.com"]
        assert sent["subject"] == "Re: Order 1234 hasn't arrived"
        assert sent["in_reply_to"] == GMAIL_FIRST_ID
        assert sent["references"] == [GMAIL_FIRST_ID]
        assert sent["message_id"].startswith(f"<heliograph.{reply_id}.")
        assert sent["text"] == "It left on Friday."
        await eventually(
            "status sent",
            lambda: _is(status_of(sqlite_database, reply_id), "sent"),
            service,
        )

        # Jane presses Reply in her mail client (the sandbox's): over SMTP, quoting us.
        said = await sandbox.post(
            "/_sandbox/say/email", json={"text": "Thanks, Ana!", "from": "jane.doe@gmail.com"}
        )
        assert said.status_code == 200, said.text
        assert said.json()["via"] == "smtp"
        _, second = await inbound(sqlite_database)
        assert second.conversation_id == first.conversation_id
        assert second.text == "Thanks, Ana!"  # our quoted reply is cut
        assert second.raw is not None and "> It left on Friday." in second.raw["full_text"]

        # The relay is busy for a while: the next reply waits, then goes out once.
        busy = {"provider": "email", "mode": "500", "seconds": 1.5}
        assert (await sandbox.post("/_sandbox/fail", json=busy)).status_code == 200
        later_id = await agent_reply(service, auth, first.conversation_id, "Courier called.")
        await eventually(
            "status sent after the outage",
            lambda: _is(status_of(sqlite_database, later_id), "sent"),
            service,
        )
        *_, later = await mails(sandbox)
        assert len(await mails(sandbox)) == 2
        assert later["text"] == "Courier called."
        assert later["in_reply_to"] == second.provider_message_id
    finally:
        service.stop()


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
