"""The CEO's Telegram bot: each command answered for a linked exec (the content checked,
times in the exec's own zone, one phone screen), refused and audited for a stranger and
for an agent, with nothing stored as a customer's; plain questions understood."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytz
from sqlalchemy import select

from crm_core.models import Customer, Intervention
from handoff.models import Handoff
from handoff.service import handoff_manual
from heliograph.db import utcnow
from heliograph.models import AuditEvent
from inbox.models import Conversation, Message
from routing.models import TeamMember
from surfaces.telegram_exec import MAX_LINES, understand
from tests.utils.telegram_team import TeamBot

CEO = "910001"
EXEC_ZONE = "America/New_York"
COMMANDS = ("/pulse", "/customer Rosa", "/atrisk", "/handoffs", "/today")


def hhmm(zone: str, around: datetime) -> set[str]:
    """The local clock in ``zone`` around ``around`` (either side of a minute boundary)."""
    tz = pytz.timezone(zone)
    return {f"{(around + timedelta(seconds=s)).astimezone(tz):%H:%M}" for s in (-5, 0, 5)}


async def world(bot: TeamBot) -> dict[str, int]:
    """Aiko in Tokyo (APAC) and Oliver in London (EMEA) on shift; Rosa (VIP, 1200) and Ken
    (300) each flagged by a rule; Rosa's conversation handed from Oliver to Aiko, who
    acknowledged it four minutes later."""
    await bot.member("Chen Wei", role="exec", chat=CEO, timezone=EXEC_ZONE, weekly_hours={})
    aiko, _ = await bot.member("Aiko Tanaka", timezone="Asia/Tokyo", region="APAC", capacity=1)
    oliver, _ = await bot.member("Oliver Bennett", timezone="Europe/London", region="EMEA")
    ids = {"aiko": aiko.id, "oliver": oliver.id}
    for chat, name in (("5551001", "Rosa"), ("5551002", "Ken")):
        update_ = await bot.update(chat, f"hello, this is {name}")
        update_["message"]["from"]["first_name"] = update_["message"]["chat"]["first_name"] = name
        await bot.post(update_)
        await bot.settle()
    async with bot.db.session() as session:
        customers = {c.display_name.split()[0]: c for c in await _all(session, Customer)}
        rosa, ken = customers["Rosa"], customers["Ken"]
        rosa.lifetime_value, rosa.vip, rosa.journey_stage = Decimal("1200"), True, "engagement"
        ken.lifetime_value = Decimal("300")
        for who, rule, reason in (
            (ken, "low_engagement", "engagement score fell to 12"),
            (rosa, "inactive", "7 days without course activity"),
        ):
            session.add(
                Intervention(
                    customer_id=who.id,  # type: ignore[arg-type]
                    rule=rule,
                    cause_key=f"{rule}:{who.id}",
                    reason=reason,
                    suggested_message="Hi!",
                )
            )
        conversation = next(
            c for c in await _all(session, Conversation) if c.customer_id == rosa.id
        )
        if conversation.assignee_id != oliver.id:  # Oliver holds it before the handoff
            conversation.assignee_id = oliver.id
        actor = await session.get(TeamMember, oliver.id)
        row = await handoff_manual(session, conversation.id, actor, to_member_id=aiko.id)  # type: ignore[arg-type]
        row.state, row.acknowledged_at = "acknowledged", row.created_at + timedelta(minutes=4)
        await session.commit()
    ids["rosa_conversation"] = conversation.id  # type: ignore[assignment]
    await bot.settle()
    return ids


async def _all(session, model):  # type: ignore[no-untyped-def]
    return list((await session.execute(select(model).order_by(model.id))).scalars().all())


async def ask(bot: TeamBot, text: str, chat: str = CEO) -> str:
    await bot.say(chat, text)
    await bot.settle()
    answer: str = (await bot.sent(chat))[-1]["text"]
    assert len(answer.splitlines()) <= MAX_LINES, answer
    return answer


async def test_pulse_by_region_with_local_times_in_the_execs_zone(team_bot: TeamBot) -> None:
    await world(team_bot)
    now = utcnow()
    answer = await ask(team_bot, "/pulse")
    print(f"\n--- /pulse, as the exec's chat shows it ---\n{answer}\n---")
    lines = answer.splitlines()
    assert lines[0].startswith("📊 Pulse · ") and lines[0].endswith(f"({EXEC_ZONE})")
    assert any(t in lines[0] for t in hhmm(EXEC_ZONE, now))  # the exec's own clock
    assert "On shift: 2 in 2 regions" in lines
    apac = next(line for line in lines if line.startswith("· APAC: "))
    emea = next(line for line in lines if line.startswith("· EMEA: "))
    assert any(apac == f"· APAC: Aiko {t}" for t in hhmm("Asia/Tokyo", now)), apac
    assert any(emea == f"· EMEA: Oliver {t}" for t in hhmm("Europe/London", now)), emea
    assert "Open: 2 · waiting for an agent: 0" in lines
    assert "First response today: median n/a" in lines  # nobody answered yet
    assert "SLA breaches: 0 ✅" in lines


async def test_customer_atrisk_handoffs_and_today(team_bot: TeamBot) -> None:
    ids = await world(team_bot)
    customer = (await ask(team_bot, "/customer Rosa")).splitlines()
    assert customer[0] == "👤 Rosa 5551001 · value 1200.00 · VIP"
    assert "Stage: engagement" in customer
    assert f"Open #{ids['rosa_conversation']} Telegram · Aiko Tanaka" in customer
    assert any(line.startswith("Last contact: ") for line in customer)
    assert "⚠️ 7 days without course activity" in customer
    assert (await ask(team_bot, "/customer Nobody")) == "No customer matches “Nobody”."

    risk = (await ask(team_bot, "/atrisk")).splitlines()
    assert risk[0] == "⚠️ At risk, most valuable first:"
    assert risk[1].startswith("1. Rosa 5551001 · 1200.00 · VIP")
    assert risk[2].startswith("   7 days without course activity")
    assert risk[3].startswith("2. Ken 5551002 · 300.00")

    handoffs = (await ask(team_bot, "/handoffs")).splitlines()
    assert handoffs[0] == "🤝 Handoffs today: 1"
    assert handoffs[1].endswith(
        f"#{ids['rosa_conversation']} Oliver Bennett → Aiko Tanaka · acked in 4 min"
    )
    (row,) = await team_bot.rows(Handoff)
    assert handoffs[1][:5] in hhmm(EXEC_ZONE, row.created_at)  # the exec's clock
    assert "Median time to acknowledge: 4 min" in handoffs

    today = (await ask(team_bot, "/today")).splitlines()
    assert today[0] == f"📈 Today since 00:00 {EXEC_ZONE}"
    assert today[1] == "Messages in: 2 · new conversations: 2 · resolved: 0"
    assert "· Telegram: 2 in, 2 new, 0 resolved, first reply n/a" in today
    assert "By region:" in today


async def test_strangers_and_agents_are_refused_logged_and_nothing_is_stored(
    team_bot: TeamBot,
) -> None:
    for command in COMMANDS:
        assert (await team_bot.say("919999", command))["team"] == 1
    await team_bot.settle()
    refusal = "Sorry, that is only for Heliograph's executives."
    assert await team_bot.texts("919999") == [refusal] * 5
    audits = await team_bot.rows(AuditEvent, AuditEvent.action == "telegram.exec_refused")
    assert [a.details["command"] for a in audits] == [c.split()[0] for c in COMMANDS]
    assert {a.actor for a in audits} == {"telegram:919999"}
    for model in (Message, Customer, Conversation):
        assert await team_bot.count(model) == 0

    await team_bot.member("Ana Silva", chat="919998")  # an agent, linked
    for command in COMMANDS:
        await team_bot.say("919998", command)
    await team_bot.settle()
    refused = [t for t in await team_bot.texts("919998") if t.startswith("Sorry")]
    assert len(refused) == 5
    audits = await team_bot.rows(AuditEvent, AuditEvent.action == "telegram.exec_refused")
    assert len(audits) == 10
    assert await team_bot.count(Message) == 0


async def test_plain_questions_are_understood(team_bot: TeamBot) -> None:
    await world(team_bot)
    assert (await ask(team_bot, "How is the team doing?")).startswith("📊 Pulse")
    assert (await ask(team_bot, "who is at risk")).startswith("⚠️ At risk")
    assert (await ask(team_bot, "Tell me about Ken")).startswith("👤 Ken 5551002")
    assert (await ask(team_bot, "numbers today")).startswith("📈 Today")
    assert (await ask(team_bot, "handoffs today?")).startswith("🤝 Handoffs today: 1")
    assert (await ask(team_bot, "what's for lunch")).startswith("I did not get that.")
    # An exec's plain text is a question, never a customer's message.
    assert await team_bot.count(Message, Message.customer_id.is_not(None)) == 2


def test_the_keyword_rules() -> None:
    assert understand("how is the team doing") == ("pulse", "")
    assert understand("Who is at risk?") == ("atrisk", "")
    assert understand("who is Rosa Costa?") == ("customer", "rosa costa")
    assert understand("tell me about ana@example.com") == ("customer", "ana@example.com")
    assert understand("any handoffs today") == ("handoffs", "")
    assert understand("numbers today") == ("today", "")
    assert understand("what's for lunch") is None


async def test_an_exec_only_chat_cannot_reply_to_customers(team_bot: TeamBot) -> None:
    await team_bot.member("Chen Wei", role="exec", chat=CEO)
    await team_bot.say("5551003", "hello")
    await team_bot.settle()
    (conversation,) = await team_bot.rows(Conversation)
    answer = await ask(team_bot, f"/reply {conversation.id} hi")
    assert answer.startswith("/reply is for agents.")
    assert await team_bot.count(Message, Message.direction == "out") == 0
    assert await team_bot.texts("5551003") == []
