"""A deactivated member's Slack and Telegram stop working at once: their thread replies,
notes, buttons, ``/hg`` and Telegram messages are refused with a word to them alone, and
nothing reaches the customer. Both surfaces run against the sandbox's fakes as processes;
the member is deactivated by an admin through the API."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from heliograph.db import Database
from heliograph.models import AuditEvent
from inbox.models import Conversation, Message, Note
from routing.models import TeamMember
from surfaces import slack_commands
from surfaces.slack_inbound import DEACTIVATED as SLACK_DEACTIVATED
from surfaces.telegram_agents import DEACTIVATED as TELEGRAM_DEACTIVATED
from tests.utils import slack_agents as agents
from tests.utils.factories import member_with_token
from tests.utils.jobs import run_jobs
from tests.utils.slack_commands import block_text, post_command, response_url
from tests.utils.telegram_team import TeamBot

# Slack's side runs against a sandbox with fake Slack and Telegram (the fixtures in
# tests/surfaces/conftest.py); the team bot has its own with the fake Bot API.
SANDBOX_ENV = agents.SLACK_AGENTS_ENV

CUSTOMER = "5550001"


async def deactivate(client: httpx.AsyncClient, auth: dict[str, str], member_id: int) -> None:
    done = await client.post(f"/api/v1/team-members/{member_id}/deactivate", headers=auth)
    assert done.status_code == 200 and done.json()["member"]["active"] is False, done.text


async def test_in_slack_their_reply_note_button_and_hg_are_refused(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    result, parent = await agents.ada_has_it(database, fake)
    async with database.read_session() as session:
        ada = (
            await session.execute(select(TeamMember).where(TeamMember.slack_user_id == agents.ADA))  # type: ignore[arg-type]
        ).scalar_one()
    assert (await agents.conversation_row(database, result.conversation_id)).assignee_id == ada.id
    _, admin = await member_with_token(database, "admin", "Ann Admin")
    await deactivate(client, admin, ada.id)  # type: ignore[arg-type]

    await agents.agent_writes(client, fake, agents.ADA, parent, "It ships today.")
    await agents.agent_writes(client, fake, agents.ADA, parent, "note: called the carrier")
    await agents.press(client, fake, agents.ADA, parent, "hg_claim", str(result.conversation_id))
    url, _ = response_url(str(fake.base_url))
    ack = await post_command(client, "queue", agents.ADA, url)
    await slack_commands.settle()
    await run_jobs(database)

    assert await agents.telegram_sent(fake) == []  # nothing reached the customer
    assert await agents.out_messages(database) == []
    async with database.read_session() as session:
        assert (await session.execute(select(func.count()).select_from(Note))).scalar() == 0
    told = await agents.slack_calls(fake, "chat.postEphemeral")
    assert [(t["user"], t["text"]) for t in told] == [(agents.ADA, SLACK_DEACTIVATED)] * 3
    assert ack.status_code == 200
    answer = block_text(ack.json())
    assert answer.startswith("Sorry, your Heliograph access is turned off") and "/hg" not in answer
    # Her conversation went back to the queue (nobody else is on the team to take it).
    assert (await agents.conversation_row(database, result.conversation_id)).assignee_id is None


async def customer_writes(bot: TeamBot, text: str) -> int:
    answer = await bot.say(CUSTOMER, text)
    assert answer["stored"] == 1, answer
    await bot.settle()
    (conversation,) = await bot.rows(Conversation, Conversation.channel == "telegram")
    return int(conversation.id)


async def test_in_telegram_their_messages_are_refused_and_stay_out_of_the_inbox(
    team_bot: TeamBot,
) -> None:
    ana, _ = await team_bot.member("Ana Silva", chat="900041")
    _, admin = await team_bot.member("Ann Admin", role="admin", weekly_hours={})
    conversation_id = await customer_writes(team_bot, "Where is my order?")
    mirrored = await team_bot.last("900041", "💬")
    await deactivate(team_bot.app, admin, ana.id)  # type: ignore[arg-type]

    reply = await team_bot.say("900041", "It ships today.", reply_to=mirrored["message_id"])
    assert reply["team"] == 1  # the team's chat still: not a customer writing
    await team_bot.say("900041", f"/claim {conversation_id}")
    await team_bot.say("900041", "hello? anyone?")
    await team_bot.settle()

    assert await team_bot.texts(CUSTOMER) == []  # nothing reached the customer
    assert await team_bot.count(Message, Message.direction == "out") == 0
    assert await team_bot.count(Message, Message.direction == "in") == 1
    assert await team_bot.count(Conversation) == 1  # her words made no conversation
    refusals = [t for t in await team_bot.texts("900041") if t == TELEGRAM_DEACTIVATED]
    assert len(refusals) == 3
    refused = await team_bot.rows(AuditEvent, AuditEvent.action == "telegram.deactivated_refused")
    assert [e.details["member_id"] for e in refused] == [ana.id] * 3
    (conversation,) = await team_bot.rows(Conversation)
    assert conversation.assignee_id is None  # back to the queue

    back = await team_bot.app.post(f"/api/v1/team-members/{ana.id}/activate", headers=admin)
    assert back.status_code == 200
    await team_bot.say("900041", "/mine")
    await team_bot.settle()
    assert (await team_bot.texts("900041"))[-1] == "You have no open conversations."
