"""Time stamps on the path (issue #17): a customer's message keeps when it reached our door,
was committed, routed and shown to the agent; a reply keeps when the provider accepted it.
Through the real routes and jobs, against the sandbox's fake Telegram and Slack, on SQLite
and PostgreSQL; /metrics builds its time-to-route and time-to-agent histograms from them."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from heliograph import jobs
from heliograph.db import Database
from inbox.models import Message
from surfaces import slack_threads
from tests.utils.http import TELEGRAM_HEADER
from tests.utils.jobs import run_jobs
from tests.utils.slack_agents import (
    ADA,
    ADA_SPEC,
    CHAT,
    SLACK_AGENTS_ENV,
    TG_SECRET,
    assigned_thread,
    configure,
    members,
)
from tests.utils.telegram_team import TeamBot

pytestmark = pytest.mark.slow

SANDBOX_ENV = SLACK_AGENTS_ENV  # the Slack test's; the Telegram one uses ``team_bot``'s own
SANDBOX_RESETS = ("/_sandbox/slack", "/_sandbox/telegram", "/_sandbox/fail?provider=slack")
CUSTOMER = "5550001"
AGENT_CHAT = "900071"
INBOUND = ("received_at", "committed_at", "routed_at", "agent_notified_at")


def stamps(message: Message) -> list[datetime]:
    found = [getattr(message, name) for name in INBOUND]
    assert all(found), dict(zip(INBOUND, found, strict=True))
    return found


def sample(page: str, name: str, **labels: str) -> float | None:
    """The sample ``name{labels}`` (exactly those labels) in a Prometheus text page."""
    for line in page.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name:
            if dict(re.findall(r'(\w+)="([^"]*)"', match[2] or "")) == labels:
                return float(match[3])
    return None


async def test_a_telegram_customer_to_an_agents_chat_and_back(team_bot: TeamBot) -> None:
    await team_bot.member("Ana Silva", chat=AGENT_CHAT)
    answer = await team_bot.say(CUSTOMER, "Where is my order?")  # the real webhook route
    assert answer["stored"] == 1, answer
    await team_bot.settle()  # routing, then the mirror to Ana's chat

    (inbound,) = await team_bot.rows(Message, Message.direction == "in")
    received, committed, routed, notified = stamps(inbound)
    assert received <= committed <= routed <= notified
    assert inbound.accepted_at is None  # a reply's stamp

    mirrored = await team_bot.last(AGENT_CHAT, "💬")
    await team_bot.say(AGENT_CHAT, "It ships today.", reply_to=mirrored["message_id"])
    await team_bot.settle()
    assert await team_bot.texts(CUSTOMER) == ["It ships today."]
    (reply,) = await team_bot.rows(Message, Message.direction == "out")
    assert reply.delivery_status == "sent"
    assert reply.accepted_at is not None and reply.accepted_at >= reply.created_at
    assert [getattr(reply, name) for name in INBOUND] == [None] * 4  # inbound stamps only
    (again,) = await team_bot.rows(Message, Message.direction == "in")
    assert stamps(again) == [received, committed, routed, notified]  # written once

    # The customer blocked the bot: Telegram refuses the next reply, for good.
    block = {"chat_id": int(CUSTOMER), "blocked": True}
    (await team_bot.sandbox.post("/_sandbox/telegram/block", json=block)).raise_for_status()
    await team_bot.say(AGENT_CHAT, "Anything else?", reply_to=mirrored["message_id"])
    await team_bot.settle()
    refused = (await team_bot.rows(Message, Message.direction == "out"))[-1]
    assert refused.id != reply.id and refused.delivery_status == "failed"
    assert refused.accepted_at is None

    page = (await team_bot.app.get("/metrics")).text
    for name in ("heliograph_time_to_agent_seconds", "heliograph_time_to_route_seconds"):
        assert f"# TYPE {name} histogram" in page
        assert sample(page, f"{name}_count") == 1, page
        assert sample(page, f"{name}_bucket", le="+Inf") == 1
        assert 0 <= (sample(page, f"{name}_sum") or -1) < 60
    took = (notified - received).total_seconds()
    buckets = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]
    for bound in buckets:  # cumulative, and the one message in the buckets its time fits
        found = sample(page, "heliograph_time_to_agent_seconds_bucket", le=str(bound))
        assert found == (1 if took <= bound else 0), (bound, took)


# --- agents in Slack ---------------------------------------------------------------------


@pytest.fixture
async def slack_agents(
    sandbox: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with agent threads in the sandbox's fake Slack (Ada a Slack user)."""
    configure(monkeypatch, str(sandbox.base_url))
    await sandbox.post("/_sandbox/slack/users", json={"id": ADA, "real_name": "Ada Lovelace"})
    added = [(e, k) for e, k in slack_threads.LISTENERS if k not in jobs.subscribers(e)]
    slack_threads.listen()
    try:
        yield sandbox
    finally:
        for event, kind in added:
            jobs.unsubscribe(event, kind)


async def telegram_update(
    client: httpx.AsyncClient, fake: httpx.AsyncClient, text: str
) -> dict[str, Any]:
    """A Telegram customer writes: the update, posted to our webhook as Telegram would."""
    body = {"text": text, "from": CHAT, "first_name": "Rosa", "deliver": False}
    built = await fake.post("/_sandbox/say/telegram", json=body)
    assert built.status_code == 200, built.text
    answer = await client.post(
        "/webhooks/telegram",
        content=json.dumps(built.json()["update"]).encode(),
        headers={"Content-Type": "application/json", TELEGRAM_HEADER: TG_SECRET},
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_a_customer_in_an_agents_slack_thread(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    await members(database, ADA_SPEC)
    assert (await telegram_update(client, slack_agents, "Where is my order?"))["stored"] == 1
    await assigned_thread(database, slack_agents)  # the thread and its first line
    await run_jobs(database)
    async with database.read_session() as session:
        found = await session.execute(select(Message).where(Message.direction == "in"))  # type: ignore[arg-type]
        (inbound,) = found.scalars().all()
    received, committed, routed, notified = stamps(inbound)
    assert received <= committed <= routed <= notified
