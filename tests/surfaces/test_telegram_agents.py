"""Agents in Telegram: linking with a one-time code, customers' messages mirrored to the
assigned agent's chat, replies by Telegram's reply-to, the agent commands, replays and a
rate-limited send. The app runs in-process over SQLite and PostgreSQL; the sandbox's fake
Bot API (its own process) is Telegram for the customer and for the agent alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiogram.types import Update
from sqlalchemy import select, update

from channels import telegram
from crm_core.bus import INTERVENTION_OPENED
from crm_core.interventions import opened_payload
from crm_core.models import Customer, Intervention
from handoff.models import Handoff
from handoff.service import escalate_unacknowledged, handoff_manual
from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.models import AuditEvent, Job
from heliograph.settings import get_settings
from inbox.models import Conversation, Message, Note
from routing.assignment import confirm, lock_many_for_routing
from routing.models import TeamMember
from routing.policy import MemberView, PolicyConfig
from routing.team import create_token, get_member
from surfaces.telegram_models import TelegramAgentUpdate, TelegramLinkCode
from tests.utils import telegram_team
from tests.utils.db import a_lock_waits
from tests.utils.factories import make_member
from tests.utils.processes import eventually, free_port, start_heliograph, start_sandbox
from tests.utils.routing_world import ALWAYS
from tests.utils.telegram_team import TeamBot

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
    await team_bot.say("900012", fresh.json()["bot_command"])  # the linked chat itself
    await team_bot.settle()
    assert (await team_bot.texts("900012"))[-1].startswith(
        "This chat is linked to Ana Silva already"
    )
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


async def test_messages_that_arrive_together_reach_the_agent_each_once(
    team_bot: TeamBot,
) -> None:
    """Three customers' follow-ups arrive before the workers run: their mirror jobs are
    handled as one batch (one transaction), and each reaches the agent's chat once."""
    await team_bot.member("Ana Silva", chat="900091")
    customers = ("5550101", "5550102", "5550103")
    for chat in customers:
        assert (await team_bot.say(chat, f"Hello, this is {chat}."))["stored"] == 1
    await team_bot.settle()
    for chat in customers:
        assert (await team_bot.say(chat, f"Any news for {chat}?"))["stored"] == 1
    assert await team_bot.count(Job, Job.kind == "telegram.team_mirror", Job.status == "pending")
    await team_bot.settle()
    texts = await team_bot.texts("900091")
    for chat in customers:
        assert sum(f"Any news for {chat}?" in text for text in texts) == 1, texts
    assert not await team_bot.count(Job, Job.kind == "telegram.team_mirror", Job.status != "done")


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


async def test_escalations_reach_the_leads_and_interventions_their_owner(
    team_bot: TeamBot,
) -> None:
    ana, _ = await team_bot.member("Ana Silva", chat="900071")
    lee, _ = await team_bot.member("Lee Lead", role="lead", chat="900072", weekly_hours={})
    bob, _ = await team_bot.member("Bob Night", weekly_hours={})  # off shift, no Telegram
    conversation_id = await customer_writes(team_bot, "Where is my order?")

    # Lee hands Ana's conversation to Bob, who never acknowledges; nobody else is on
    # shift to re-route it to, so the leads hear of it.
    async with team_bot.db.session() as session:
        actor = await session.get(TeamMember, lee.id)
        row = await handoff_manual(session, conversation_id, actor, to_member_id=bob.id)  # type: ignore[arg-type]
        await session.commit()
    async with team_bot.db.session() as session:
        later = utcnow() + timedelta(minutes=get_settings().handoff_ack_minutes + 1)
        assert await escalate_unacknowledged(session, now=later) == 1
        await session.commit()
    await team_bot.settle()
    alert = await team_bot.last("900072", "⚠️")
    assert alert["text"].startswith(f"⚠️ Handoff #{row.id} of #{conversation_id} to Bob Night is ")
    assert "without an acknowledgement" in alert["text"]
    assert not any(t.startswith("⚠️") for t in await team_bot.texts("900071"))

    # An intervention for Ana's customer (she is their agent, and on shift): her chat.
    async with team_bot.db.session() as session:
        (conversation,) = await team_bot.rows(Conversation)
        customer = await session.get(Customer, conversation.customer_id)
        found = Intervention(
            customer_id=conversation.customer_id,
            rule="inactive",
            cause_key="inactive:1",
            reason="7 days without course activity",
            suggested_message="Hi! Shall we pick up where you left off?",
            owner_id=ana.id,
        )
        session.add(found)
        await session.flush()
        payload = opened_payload(
            {**found.model_dump(), "details": {"title": "Gentle nudge"}}, customer
        )
        await jobs.publish(session, INTERVENTION_OPENED, payload)
        await session.commit()
    await team_bot.settle()
    nudge = await team_bot.last("900071", "🔔")
    assert nudge["text"] == (
        f"🔔 Gentle nudge: Chat {CUSTOMER} (discovery)\n7 days without course activity\n"
        "Suggested: Hi! Shall we pick up where you left off?"
    )


async def test_long_polling_takes_the_same_path(team_bot: TeamBot) -> None:
    """``serve --telegram-polling`` feeds each fetched update through the same diversion."""
    await team_bot.member("Ana Silva", chat="900081")
    await customer_writes(team_bot, "Where is my order?")
    mirrored = await team_bot.last("900081", "💬")
    built = await team_bot.update("900081", "Polled reply.", reply_to=mirrored["message_id"])
    polled = Update.model_validate(built)
    assert await telegram._take(polled) == polled.update_id + 1  # the offset moves on
    assert await telegram._take(polled) == polled.update_id + 1  # a redelivery: nothing new
    await team_bot.settle()
    assert await team_bot.texts(CUSTOMER) == ["Polled reply."]
    assert await team_bot.count(Message, Message.direction == "in") == 1


# --- end to end, as separate processes ------------------------------------------------------

PHONE = "+351912345678"
WHATSAPP_FROM = "+14155238886"
PROVIDERS = {
    "HELIOGRAPH_TELEGRAM_BOT_TOKEN": telegram_team.TOKEN,
    "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": telegram_team.WEBHOOK_SECRET,
    "HELIOGRAPH_TWILIO_ACCOUNT_SID": "AC" + "7" * 32,
    "HELIOGRAPH_TWILIO_AUTH_TOKEN": "test-twilio-auth-token-0123456789",
    "HELIOGRAPH_TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
}


@pytest.mark.slow
async def test_end_to_end_a_whatsapp_customer_answered_from_telegram(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    """``heliograph serve`` and the sandbox as their own processes: Rosa writes on WhatsApp
    (Twilio), the agent gets it in Telegram, answers with reply-to, and Rosa's phone gets
    the answer on WhatsApp; the agent's /note stays in the inbox."""
    port, sandbox_port = free_port(), free_port()
    public = f"http://127.0.0.1:{port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {**PROVIDERS, "HELIOGRAPH_PUBLIC_URL": public}
    sandbox_service = start_sandbox(
        sandbox_port,
        env,
        tmp_path / "sandbox.log",
    )
    serve = start_heliograph(
        ["serve"],
        {
            **env,
            "HELIOGRAPH_DATABASE_URL": sqlite_url,
            "HELIOGRAPH_TELEGRAM_API_BASE": f"{sandbox_url}/telegram",
            "HELIOGRAPH_TWILIO_API_BASE": f"{sandbox_url}/twilio",
            "HELIOGRAPH_MEDIA_DIR": str(tmp_path / "media"),
        },
        tmp_path / "serve.log",
        port,
    )
    services = (serve, sandbox_service)
    try:
        async with (
            httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox,
            httpx.AsyncClient(base_url=public, timeout=30) as api,
        ):

            async def calls(provider: str, method: str) -> list[dict[str, Any]]:
                params = {"provider": provider, "method": method}
                return [
                    c["params"]
                    for c in (await sandbox.get("/_sandbox/calls", params=params)).json()
                ]

            async def chat(starting: str) -> dict[str, Any] | None:
                sent = (await sandbox.get("/_sandbox/telegram/chats/777001")).json()["sent"]
                return next((m for m in sent if m["text"].startswith(starting)), None)

            async def say(text: str, reply_to: int | None = None) -> None:
                body = {"text": text, "from": "777001", "reply_to": reply_to}
                answer = await sandbox.post("/_sandbox/say/telegram", json=body)
                assert answer.status_code == 200 and answer.json()["heliograph"]["team"] == 1

            await eventually("setWebhook", lambda: calls("telegram", "setWebhook"), 30, *services)
            async with sqlite_database.session() as session:
                await make_member(
                    session, name="Ana Silva", weekly_hours=ALWAYS, languages=["en", "pt"]
                )
                token = await create_token(session, "ana.agent@team.example")
                await session.commit()
            issued = await api.post(
                "/api/v1/team-members/me/telegram-link",
                headers={"Authorization": f"Bearer {token}"},
            )
            await say(issued.json()["bot_command"])
            await eventually("the welcome", lambda: chat("✅ Linked"), 30, *services)

            written = {"text": "Olá! Where is my order?", "from": PHONE, "name": "Rosa Costa"}
            assert (await sandbox.post("/_sandbox/say/whatsapp", json=written)).status_code == 200
            mirrored = await eventually("the mirrored message", lambda: chat("💬"), 30, *services)
            assert mirrored["text"].startswith("💬 Rosa Costa · WhatsApp · #")
            assert "Olá! Where is my order?" in mirrored["text"]

            await say("It ships today.", reply_to=mirrored["message_id"])
            (create,) = await eventually(
                "the WhatsApp reply", lambda: calls("twilio", "messages.create"), 30, *services
            )
            assert (create["To"], create["From"], create["Body"]) == (
                f"whatsapp:{PHONE}",
                f"whatsapp:{WHATSAPP_FROM}",
                "It ships today.",
            )
            conversation_id = int(mirrored["text"].split("#", 1)[1].split()[0])
            await say(f"/note {conversation_id} asked for gift wrap")
            await eventually("the note's answer", lambda: chat("📝"), 30, *services)
            async with sqlite_database.read_session() as session:
                notes = (await session.execute(select(Note.text))).scalars().all()
            assert notes == ["asked for gift wrap"]
            assert len(await calls("twilio", "messages.create")) == 1  # the note stayed home
    finally:
        serve.stop()
        sandbox_service.stop()


def test_a_long_customer_message_is_cut_to_one_telegram_message() -> None:
    from surfaces.telegram_send import fit

    text = "😀 " * 2000 + "the end"  # 6,007 characters, 8,007 UTF-16 units
    cut = fit(text)
    assert len(cut.encode("utf-16-le")) // 2 <= 4096 and cut.endswith(" …")
    assert fit("short") == "short"


async def test_a_reply_from_telegram_while_routing_holds_the_conversation_goes_through(
    team_bot: TeamBot,
) -> None:
    """PostgreSQL: the agent answers from Telegram while routing holds the conversation and
    then locks the agents it weighs. The reply waits for routing and is stored; neither is
    rolled back as a deadlock (the sign of life the message gives, an UPDATE of the agent's
    row, comes after the reply, so the reply holds no lock routing would wait for)."""
    if team_bot.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: no lock cycle to show")
    ana, _ = await team_bot.member("Ana Silva", chat="900121")
    conversation_id = await customer_writes(team_bot, "Where is my order?")
    mirrored = await team_bot.last("900121", "💬")

    async with team_bot.db.session() as routing:
        locked = await lock_many_for_routing(routing, [conversation_id])
        answering = asyncio.create_task(
            team_bot.say("900121", "It ships today.", reply_to=mirrored["message_id"])
        )
        await eventually("the reply waits for routing", lambda: a_lock_waits(team_bot.db), 15)
        view = MemberView.of(await get_member(routing, ana.id))  # type: ignore[arg-type]
        conversation = locked[conversation_id].conversation
        assert await confirm(routing, view, conversation, utcnow(), PolicyConfig()) is not None
        await routing.commit()
    answer = await asyncio.wait_for(answering, 30)  # a deadlock answers the webhook 503
    assert answer["team"] == 1
    (reply,) = await team_bot.rows(Message, Message.direction == "out")
    assert (reply.text, reply.author_id) == ("It ships today.", ana.id)
