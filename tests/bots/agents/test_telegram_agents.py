"""Agents in Telegram: linking with a one-time code, customers' messages mirrored to the
assigned agent's chat, replies by Telegram's reply-to, the agent commands, replays and a
rate-limited send. The app runs in-process over SQLite and PostgreSQL; the sandbox's fake
Bot API (its own process) is Telegram for the customer and for the agent alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from bots.agents.telegram_models import TelegramAgentUpdate, TelegramLinkCode
from crm_core.models import Customer
from handoff.models import Handoff
from heliograph.db import utcnow
from heliograph.models import AuditEvent, Job
from inbox.models import Conversation, Message, Note
from routing.models import TeamMember
from tests.utils import telegram_team
from tests.utils.telegram_team import TeamBot

sandbox_url, team_bot = telegram_team.sandbox_url, telegram_team.team_bot  # the fixtures

CUSTOMER = "5550001"


async def customer_writes(bot: TeamBot, text: str, chat: str = CUSTOMER) -> int:
    """A Telegram customer writes; routing and the mirror jobs run. The conversation id."""
    answer = await bot.say(chat, text)
    assert answer["stored"] == 1, answer
    await bot.settle()
    (conversation,) = await bot.rows(Conversation, Conversation.channel == "telegram")
    return int(conversation.id)


async def test_a_valid_code_links_the_chat_once(team_bot: TeamBot) -> None:
    ana, auth = await team_bot.member("Ana Silva")
    issued = await team_bot.app.post("/api/v1/team-members/me/telegram-link", headers=auth)
    assert issued.status_code == 201, issued.text
    code = issued.json()
    assert code["bot_command"] == f"/link {code['code']}"
    assert len(code["code"]) == 8
    (row,) = await team_bot.rows(TelegramLinkCode)
    assert row.code_hash != code["code"] and code["code"] not in row.code_hash  # hashed
    expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or utcnow().tzinfo)
    assert timedelta(minutes=14) < expires - utcnow() <= timedelta(minutes=15)

    answer = await team_bot.say("900001", code["bot_command"])
    assert answer == {"stored": 0, "duplicates": 0, "edited": 0, "ignored": 0, "team": 1}
    await team_bot.settle()
    (linked,) = await team_bot.rows(TeamMember, TeamMember.id == ana.id)
    assert linked.telegram_chat_id == "900001"
    (welcome,) = await team_bot.texts("900001")
    assert welcome.startswith("✅ Linked: this chat is Ana Silva's (agent).")
    assert "/mine" in welcome
    # The /link message is not a customer's: nothing of it is in the inbox.
    assert await team_bot.count(Message) == 0
    assert await team_bot.count(Customer) == 0


async def test_wrong_expired_and_reused_codes_are_refused_and_audited(team_bot: TeamBot) -> None:
    ana, auth = await team_bot.member("Ana Silva")
    await team_bot.say("900011", "/link WRONG123")
    issued = await team_bot.app.post("/api/v1/team-members/me/telegram-link", headers=auth)
    async with team_bot.db.session() as session:  # 16 minutes later
        await session.execute(
            update(TelegramLinkCode).values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
    await team_bot.say("900011", issued.json()["bot_command"])
    fresh = await team_bot.app.post("/api/v1/team-members/me/telegram-link", headers=auth)
    await team_bot.say("900012", fresh.json()["bot_command"])  # links 900012
    await team_bot.say("900011", fresh.json()["bot_command"])  # used already
    await team_bot.settle()

    refusals = await team_bot.texts("900011")
    assert len(refusals) == 3
    assert all(t.startswith("That code is not valid") for t in refusals)
    (linked,) = await team_bot.rows(TeamMember, TeamMember.id == ana.id)
    assert linked.telegram_chat_id == "900012"  # the reuse did not move it
    audits = await team_bot.rows(AuditEvent, AuditEvent.action == "telegram.link_refused")
    assert [a.actor for a in audits] == ["telegram:900011"] * 3
    assert await team_bot.count(Message) == 0


async def test_the_agent_gets_the_customer_in_telegram_and_answers_by_reply_to(
    team_bot: TeamBot,
) -> None:
    ana, _ = await team_bot.member("Ana Silva", chat="900021")
    conversation_id = await customer_writes(team_bot, "Where is my order?")

    mirrored = await team_bot.last("900021", "💬")
    assert mirrored["text"].startswith(f"💬 Chat {CUSTOMER} · Telegram · #{conversation_id}\n")
    assert "Where is my order?" in mirrored["text"]
    card = await team_bot.last("900021", "📥 Yours now")
    assert "Journey:" in card["text"]

    answer = await team_bot.say("900021", "It ships today.", reply_to=mirrored["message_id"])
    assert answer["team"] == 1
    await team_bot.settle()
    assert await team_bot.texts(CUSTOMER) == ["It ships today."]  # on their own channel
    (reply,) = await team_bot.rows(Message, Message.direction == "out")
    assert (reply.conversation_id, reply.author_id, reply.delivery_status) == (
        conversation_id,
        ana.id,
        "sent",
    )

    await team_bot.say("900021", "/note called the carrier", reply_to=mirrored["message_id"])
    await team_bot.settle()
    (note,) = await team_bot.rows(Note)
    assert (note.conversation_id, note.text, note.author_id) == (
        conversation_id,
        "called the carrier",
        ana.id,
    )
    assert await team_bot.texts(CUSTOMER) == ["It ships today."]  # the note never went out
    assert (await team_bot.last("900021", "📝"))["text"].startswith(
        f"📝 Note kept on #{conversation_id}"
    )
    # Neither the agent's reply nor their note became a customer message.
    assert await team_bot.count(Message, Message.direction == "in") == 1


async def test_agent_commands(team_bot: TeamBot) -> None:
    ana, _ = await team_bot.member("Ana Silva", chat="900031", capacity=1)
    mine = await customer_writes(team_bot, "first question")  # Ana's (capacity 1)
    oliver, _ = await team_bot.member("Oliver Bennett", chat="900032")
    await team_bot.say("5550002", "second question")
    await team_bot.settle()
    (other,) = [c.id for c in await team_bot.rows(Conversation) if c.id != mine]
    (second,) = await team_bot.rows(Conversation, Conversation.id == other)
    assert second.assignee_id == oliver.id

    await team_bot.say("900031", "/mine")
    await team_bot.say("900031", f"/claim {other}")  # Oliver's: agents cannot take it
    await team_bot.say("900031", f"/reply {mine} On its way!")
    await team_bot.say("900031", f"/resolve {mine}")
    await team_bot.say("900031", "hello?")  # no command, no reply-to: help
    await team_bot.say("900031", "/frobnicate 3")
    await team_bot.settle()
    answers = await team_bot.texts("900031")
    listing = next(t for t in answers if t.startswith("Your open conversations"))
    assert f"#{mine} Chat {CUSTOMER} · Telegram · open" in listing
    assert f"#{other}" not in listing
    assert f"❌ conversation {other} is assigned to someone else; ask a lead to move it" in answers
    assert f"↩️ Sent to Chat {CUSTOMER} on Telegram (#{mine})." in answers
    assert f"✅ #{mine} resolved." in answers
    assert any(t.startswith("Heliograph for agents:") for t in answers)
    assert any(t.startswith("I do not know /frobnicate") for t in answers)
    assert await team_bot.texts(CUSTOMER) == ["On its way!"]
    (first,) = await team_bot.rows(Conversation, Conversation.id == mine)
    assert first.status == "resolved"
    (second,) = await team_bot.rows(Conversation, Conversation.id == other)
    assert second.assignee_id == oliver.id  # the refused claim changed nothing

    # Oliver hands his conversation over: Ana is next (the only other agent on shift), and
    # gets the notice with the context package and /ack; she acknowledges it.
    await team_bot.say("900032", f"/handoff {other} asked about a refund")
    await team_bot.settle()
    handed = await team_bot.last("900032", "🤝")
    assert handed["text"].startswith(f"🤝 #{other} handed to Ana Silva")
    (handoff,) = await team_bot.rows(Handoff)
    notice = await team_bot.last("900031", "🤝 Handoff")
    assert f"#{other} from Oliver Bennett" in notice["text"]
    assert "second question" in notice["text"]
    assert "Note: asked about a refund" in notice["text"]
    assert f"/ack {handoff.id}" in notice["text"]
    await team_bot.say("900031", f"/ack {handoff.id}")
    await team_bot.settle()
    (handoff,) = await team_bot.rows(Handoff)
    assert handoff.state == "acknowledged" and handoff.to_member_id == ana.id
    assert (await team_bot.last("900031", "👍"))["text"].startswith(f"👍 Handoff #{handoff.id}")

    # Claiming from the queue: Oliver takes a conversation nobody has.
    async with team_bot.db.session() as session:
        await session.execute(
            update(Conversation).where(Conversation.id == mine).values(status="open")
        )
        await session.execute(
            update(Conversation).where(Conversation.id == mine).values(assignee_id=None)
        )
        await session.commit()
    await team_bot.say("900032", f"/claim {mine}")
    await team_bot.settle()
    assert (await team_bot.last("900032", "✋"))["text"].startswith(f"✋ #{mine} ")
    (first,) = await team_bot.rows(Conversation, Conversation.id == mine)
    assert first.assignee_id == oliver.id


async def test_a_replayed_update_does_nothing_twice(team_bot: TeamBot) -> None:
    await team_bot.member("Ana Silva", chat="900041")
    await customer_writes(team_bot, "Where is my order?")
    mirrored = await team_bot.last("900041", "💬")
    reply = await team_bot.update("900041", "It ships today.", reply_to=mirrored["message_id"])
    note = await team_bot.update("900041", "/note 1 checked", reply_to=None)
    for update_ in (reply, reply, note, note):
        assert (await team_bot.post(update_))["team"] == 1
    await team_bot.settle()
    await team_bot.post(reply)  # after its jobs ran, too
    await team_bot.settle()
    assert await team_bot.count(Message, Message.direction == "out") == 1
    assert await team_bot.count(Note) == 1
    assert await team_bot.texts(CUSTOMER) == ["It ships today."]
    assert len([t for t in await team_bot.texts("900041") if t.startswith("📝")]) == 1
    assert await team_bot.count(TelegramAgentUpdate) == 3  # /link, the reply, the note


async def test_a_rate_limited_send_is_retried_once_and_not_duplicated(team_bot: TeamBot) -> None:
    await team_bot.member("Ana Silva", chat="900051")
    await team_bot.script("sendMessage", "429:1")
    await customer_writes(team_bot, "Where is my order?")  # the card meets the 429
    first = await team_bot.texts("900051")
    await asyncio.sleep(1.2)  # the retry_after Telegram asked for
    await team_bot.settle()
    texts = await team_bot.texts("900051")
    assert len(texts) == len(first) + 1
    assert len([t for t in texts if t.startswith("📥 Yours now")]) == 1
    assert len([t for t in texts if t.startswith("💬")]) == 1
    sends = await team_bot.rows(Job, Job.kind == "telegram.team_send")
    assert {j.status for j in sends} == {"done"}
    assert sorted(j.attempts for j in sends)[-1] == 2  # one job tried twice, the rest once
    assert sum(j.attempts for j in sends) == len(sends) + 1


async def test_replies_from_the_web_reach_the_agent_and_theirs_are_not_echoed(
    team_bot: TeamBot,
) -> None:
    await team_bot.member("Ana Silva", chat="900061")
    _, lead_auth = await team_bot.member("Lee Lead", role="lead")
    conversation_id = await customer_writes(team_bot, "Where is my order?")
    mirrored = await team_bot.last("900061", "💬")
    await team_bot.say("900061", "Checking now.", reply_to=mirrored["message_id"])
    web = await team_bot.app.post(
        f"/api/v1/conversations/{conversation_id}/reply",
        json={"text": "It left the warehouse."},
        headers=lead_auth,
    )
    assert web.status_code == 202
    await team_bot.settle()
    shown = [t for t in await team_bot.texts("900061") if t.startswith("↪️")]
    assert shown == [f"↪️ #{conversation_id} Lee Lead to Chat {CUSTOMER}:\nIt left the warehouse."]
    assert await team_bot.texts(CUSTOMER) == ["Checking now.", "It left the warehouse."]
