"""Slack outbound, against the sandbox's fake Slack as a separate process.

An agent's reply must land in the customer's Slack channel and thread, survive Slack's
rate limiting and 5xx without posting anything twice, and say why when Slack refuses it.
The last test runs the whole path with ``heliograph serve`` and the sandbox as two
processes: a customer DMs the app, an agent answers over the REST API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.models import Conversation, Message
from tests.utils.factories import member_with_token
from tests.utils.jobs import run_jobs
from tests.utils.processes import free_port, start_heliograph
from tests.utils.slack import BOT_TOKEN, SIGNING_SECRET, fixture, post_event, slack_env

pytestmark = pytest.mark.slow


SERVICE_PORT = free_port()  # where the e2e test's ``heliograph serve`` listens
# One fake Slack for the module; it sends customers' DMs to that port.
SANDBOX_ENV = {
    "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
    "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "HELIOGRAPH_PUBLIC_URL": f"http://127.0.0.1:{SERVICE_PORT}",
}


@pytest.fixture
def fake_slack(
    sandbox_url: str, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    url = sandbox_url
    httpx.delete(f"{url}/_sandbox/calls")  # a sync fixture: blocking is fine here
    slack_env(monkeypatch, f"{url}/slack/api/")
    yield url
    reset_settings()


async def fake(method: str, url: str, **kw: Any) -> httpx.Response:
    """Talk to the sandbox (its control endpoints, or as the customer)."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(method, url, **kw)


async def sent_to_slack(url: str) -> list[dict[str, Any]]:
    """What the fake Slack accepted through chat.postMessage, in order."""
    params = {"provider": "slack", "method": "chat.postMessage"}
    calls = (await fake("GET", f"{url}/_sandbox/calls", params=params)).json()
    return [c["params"] for c in calls]


async def customer_writes(
    client: httpx.AsyncClient, database: Database, payload: dict[str, Any]
) -> int:
    assert (await post_event(client, payload)).status_code == 200
    async with database.read_session() as session:
        return int((await session.execute(select(func.max(Conversation.id)))).scalar_one())


@pytest.fixture
async def auth(database: Database) -> dict[str, str]:
    return (await member_with_token(database))[1]


async def agent_replies(
    client: httpx.AsyncClient, auth: dict[str, str], conversation_id: int, text: str
) -> int:
    response = await client.post(
        f"/api/v1/conversations/{conversation_id}/reply", json={"text": text}, headers=auth
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def reply_row(database: Database, message_id: int) -> Message:
    async with database.read_session() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message


async def test_reply_to_a_dm_goes_to_that_dm(
    client: httpx.AsyncClient, database: Database, fake_slack: str, auth: dict[str, str]
) -> None:
    conversation = await customer_writes(client, database, fixture("message_im"))
    reply = await agent_replies(client, auth, conversation, "Yes, loud & clear <3")

    assert (await run_jobs(database)).get("done", 0) >= 1

    ((sent,),) = [await sent_to_slack(fake_slack)]
    assert sent["channel"] == "D024BE91L"
    assert "thread_ts" not in sent  # a DM answer is a plain chat line
    assert sent["text"] == "Yes, loud &amp; clear &lt;3"  # Slack's escaping of & < >
    row = await reply_row(database, reply)
    assert row.delivery_status == "delivered"
    assert row.external_id is not None and row.external_id.startswith("D024BE91L:")


async def test_reply_in_a_shared_channel_goes_in_the_customers_thread(
    client: httpx.AsyncClient, database: Database, fake_slack: str, auth: dict[str, str]
) -> None:
    conversation = await customer_writes(client, database, fixture("message_channels"))
    await agent_replies(client, auth, conversation, "Prospering, thanks.")
    await run_jobs(database)
    in_thread = fixture("message_channels")  # a follow-up inside an existing thread
    in_thread["event"].update(ts="1355517600.000100", thread_ts="1355517000.000001", text="And?")
    await customer_writes(client, database, in_thread)
    await agent_replies(client, auth, conversation, "And more.")

    await run_jobs(database)

    first, second = await sent_to_slack(fake_slack)
    assert (first["channel"], first["thread_ts"]) == ("C123ABC456", "1355517523.000005")
    assert (second["channel"], second["thread_ts"]) == ("C123ABC456", "1355517000.000001")
    assert [first["text"], second["text"]] == ["Prospering, thanks.", "And more."]


async def test_long_reply_is_split_and_a_failure_half_way_resends_nothing(
    client: httpx.AsyncClient, database: Database, fake_slack: str, auth: dict[str, str]
) -> None:
    conversation = await customer_writes(client, database, fixture("message_channels"))
    paragraphs = [f"Part {n}: " + "word " * 700 for n in range(1, 4)]  # ~3,500 chars each
    reply = await agent_replies(client, auth, conversation, "\n\n".join(paragraphs))
    # Slack takes the first part, then fails the second with a 500.
    await fake("POST", f"{fake_slack}/_sandbox/slack/fail-next", json={"after": 1})

    assert (await run_jobs(database, rounds=1)).get("retry") == 1
    assert [p["text"][:7] for p in await sent_to_slack(fake_slack)] == ["Part 1:"]
    await asyncio.sleep(0.6)  # past the test backoff (HELIOGRAPH_JOB_BACKOFF_MAX_S=0.5)
    await run_jobs(database)

    parts = await sent_to_slack(fake_slack)
    assert [p["text"][:7] for p in parts] == ["Part 1:", "Part 2:", "Part 3:"]
    assert all(len(p["text"]) <= 3_900 for p in parts)
    assert {p["thread_ts"] for p in parts} == {"1355517523.000005"}
    row = await reply_row(database, reply)
    assert row.delivery_status == "delivered"
    assert row.raw is not None and row.raw["delivery"]["slack"]["of"] == 3


async def test_ratelimited_waits_as_long_as_slack_asks(
    client: httpx.AsyncClient, database: Database, fake_slack: str, auth: dict[str, str]
) -> None:
    conversation = await customer_writes(client, database, fixture("message_im"))
    await run_jobs(database)  # what follows the customer's message (routing...) is done
    reply = await agent_replies(client, auth, conversation, "One moment please")
    await fake(
        "POST",
        f"{fake_slack}/_sandbox/fail",
        json={"provider": "slack", "mode": "429", "seconds": 0.5, "retry_after": 1},
    )

    assert (await run_jobs(database)).get("retry") == 1

    async with database.read_session() as session:
        run_at = (
            await session.execute(
                select(Job.run_at).where(Job.kind == "outbox.deliver")  # type: ignore[call-overload]
            )
        ).scalar_one()
    assert run_at - utcnow() > timedelta(seconds=0.7)  # Retry-After: 1; backoff is <= 0.5 s
    assert "rate-limited" in ((await reply_row(database, reply)).delivery_error or "")
    assert await sent_to_slack(fake_slack) == []
    await asyncio.sleep(max((run_at - utcnow()).total_seconds(), 0) + 0.1)
    await run_jobs(database)
    assert [p["text"] for p in await sent_to_slack(fake_slack)] == ["One moment please"]
    assert (await reply_row(database, reply)).delivery_status == "delivered"


async def test_slack_unreachable_is_tried_again_later(
    client: httpx.AsyncClient,
    database: Database,
    fake_slack: str,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conversation = await customer_writes(client, database, fixture("message_im"))
    reply = await agent_replies(client, auth, conversation, "Are you there?")
    slack_env(monkeypatch, "http://127.0.0.1:9/api/")  # nothing listens there

    # At least one retry: with the tests' 25-50 ms backoff, a later job in the same round
    # (a listener of message.sent) can make the delivery due again and count a second one.
    assert (await run_jobs(database)).get("retry", 0) >= 1

    row = await reply_row(database, reply)
    assert row.delivery_status == "queued"
    assert "could not reach Slack" in (row.delivery_error or "")


async def test_channel_not_found_fails_the_reply_with_slacks_reason(
    client: httpx.AsyncClient, database: Database, fake_slack: str, auth: dict[str, str]
) -> None:
    gone = fixture("message_channels")
    gone["event"]["channel"] = "C0GONE0001"
    conversation = await customer_writes(client, database, gone)
    reply = await agent_replies(client, auth, conversation, "Hello?")
    await fake(
        "POST", f"{fake_slack}/_sandbox/slack/channels/C0GONE0001", json={"state": "deleted"}
    )

    assert (await run_jobs(database)).get("dead") == 1

    row = await reply_row(database, reply)
    assert row.delivery_status == "failed"
    assert row.delivery_error == "Slack refused the reply: channel_not_found"
    assert await sent_to_slack(fake_slack) == []


async def test_customer_dm_and_agent_reply_across_processes(
    sandbox_url: str, sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    slack, port = sandbox_url, SERVICE_PORT
    await fake("DELETE", f"{slack}/_sandbox/calls")
    service = start_heliograph(
        ["serve"],
        {
            "HELIOGRAPH_DATABASE_URL": sqlite_url,
            "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
            "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "HELIOGRAPH_SLACK_API_BASE": f"{slack}/slack/api/",
            "HELIOGRAPH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "HELIOGRAPH_RUN_SCHEDULER": "false",
        },
        tmp_path / "serve.log",
        port,
    )
    try:
        said = await fake(
            "POST",
            f"{slack}/_sandbox/say/slack",
            json={"text": "My order has not arrived", "from": "U0CUSTOMER"},
        )
        assert said.status_code == 200, said.text + service.log()[-2000:]
        _, auth = await member_with_token(sqlite_database)
        listed = await fake("GET", f"{service.url}/api/v1/conversations", headers=auth)
        (conversation,) = listed.json()
        url = f"{service.url}/api/v1/conversations/{conversation['id']}"
        detail = (await fake("GET", url, headers=auth)).json()
        assert [m["text"] for m in detail["messages"]] == ["My order has not arrived"]

        sent = await fake("POST", f"{url}/reply", json={"text": "It ships today."}, headers=auth)
        assert sent.status_code == 202, sent.text

        for _ in range(100):  # the service's worker delivers it within a few seconds
            if await sent_to_slack(slack):
                break
            await asyncio.sleep(0.2)
        assert await sent_to_slack(slack) == [
            {"channel": "D0CUSTOMER", "text": "It ships today."}
        ], service.log()[-3000:]
    finally:
        service.stop()
