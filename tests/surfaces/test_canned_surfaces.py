"""Canned responses from the chat surfaces (issue #16): ``/canned <shortcut>`` in a Slack
thread or in Telegram sends the filled canned text to the customer through the outbox;
an unknown shortcut is told to the agent in their surface and nothing is sent."""

from __future__ import annotations

import httpx
import pytest

from heliograph.db import Database
from inbox import canned
from inbox.models import Message
from tests.utils.factories import make_member
from tests.utils.jobs import run_jobs
from tests.utils.slack_agents import (
    ADA,
    SLACK_AGENTS_ENV,
    ada_has_it,
    agent_writes,
    out_messages,
    slack_calls,
    telegram_sent,
)
from tests.utils.telegram_team import TeamBot

pytestmark = pytest.mark.slow

SANDBOX_ENV = SLACK_AGENTS_ENV
REFUND = "Hi {{customer.first_name}}, refunds take 5 days. {{agent.first_name}} {{order.id}}"


async def _team_refund(database: Database) -> None:
    async with database.session() as session:
        lead = await make_member(session, "Lia Lead", "lead")
        await canned.create(
            session, lead, shortcut="refund", title="Refund", text=REFUND, team=True
        )
        await session.commit()


async def test_slash_canned_in_a_slack_thread_reaches_the_customer(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    await _team_refund(database)
    result, parent = await ada_has_it(database, fake)

    await agent_writes(client, fake, ADA, parent, "/canned nope")
    await run_jobs(database)
    assert await telegram_sent(fake) == []  # nothing sent
    assert await out_messages(database) == []
    told = [c["text"] for c in await slack_calls(fake, "chat.postEphemeral")]
    assert any("Not sent: no canned response '/nope'" in t for t in told), told

    await agent_writes(client, fake, ADA, parent, "/canned refund")
    await run_jobs(database)
    filled = "Hi Rosa, refunds take 5 days. Ada {{order.id}}"
    assert await telegram_sent(fake) == [filled]  # through the outbox to the customer
    (message,) = await out_messages(database)
    assert (message.conversation_id, message.text, message.delivery_status) == (
        result.conversation_id,
        filled,
        "sent",
    )
    told = [c["text"] for c in await slack_calls(fake, "chat.postEphemeral")]
    assert any("unknown placeholders as written: {{order.id}}" in t for t in told), told


async def test_slash_canned_in_telegram_reaches_the_customer(team_bot: TeamBot) -> None:
    ana, _ = await team_bot.member("Ana Silva", chat="900041")
    _, auth = await team_bot.member("Lia Lead", role="lead")
    made = await team_bot.app.post(
        "/api/v1/canned-responses",
        json={"shortcut": "refund", "title": "Refund", "text": REFUND, "team": True},
        headers=auth,
    )
    assert made.status_code == 201, made.text
    answer = await team_bot.say("5550001", "I want my money back")
    assert answer["stored"] == 1
    await team_bot.settle()
    (conversation,) = {m.conversation_id for m in await team_bot.rows(Message)}
    mirrored = await team_bot.last("900041", "💬")

    await team_bot.say("900041", "/canned nope", reply_to=mirrored["message_id"])
    await team_bot.settle()
    assert (await team_bot.last("900041", "❌"))["text"] == (
        "❌ Not sent: no canned response '/nope'."
    )
    assert await team_bot.texts("5550001") == []

    await team_bot.say("900041", "/canned refund", reply_to=mirrored["message_id"])
    await team_bot.say("900041", f"/canned {conversation} refund")
    await team_bot.settle()
    sent = await team_bot.texts("5550001")
    assert len(sent) == 2 and sent[0] == sent[1]
    assert sent[0].startswith("Hi ") and sent[0].endswith(", refunds take 5 days. Ana {{order.id}}")
    assert "{{customer.first_name}}" not in sent[0]
    done = await team_bot.last("900041", "↩️")
    assert done["text"].startswith("↩️ Sent /refund to ") and f"(#{conversation})." in done["text"]
    assert "Unknown placeholders were sent as written: {{order.id}}" in done["text"]
    outs = await team_bot.rows(Message, Message.direction == "out")
    assert [(m.author_id, m.delivery_status) for m in outs] == [(ana.id, "sent")] * 2
