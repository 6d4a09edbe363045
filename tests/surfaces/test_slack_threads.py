"""Agents in Slack, against the sandbox's fake Slack (and fake Telegram) as a process.

The first test runs everything as separate processes (``heliograph serve`` and the
sandbox): a Telegram customer writes, the chosen agent's thread appears in the inbox
channel with the customer card, the agent's thread reply reaches the customer on
Telegram, and a ``note:`` reply does not. The others run Heliograph in-process (jobs run
with ``run_jobs``); the sandbox hands its signed Slack requests back (``relay``) to be
posted to the in-process app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crm_core.bus import INTERVENTION_OPENED
from crm_core.interventions import opened_payload
from crm_core.models import Customer, Intervention
from handoff.models import Handoff
from heliograph import jobs
from heliograph.db import Database, utcnow
from inbox.models import Conversation, Message, Note
from routing.bus import ConversationAssigned
from routing.models import TeamMember
from routing.team import create_token
from surfaces import slack_threads
from surfaces.models import SlackAgentPost, SlackAgentThread
from surfaces.slack_posts import post_once
from tests.utils.db import rows
from tests.utils.factories import edit, receive
from tests.utils.jobs import run_jobs, run_jobs_until
from tests.utils.processes import start_heliograph
from tests.utils.slack import BOT_TOKEN, SIGNING_SECRET
from tests.utils.slack_agents import (
    ADA,
    ADA_SPEC,
    BEN,
    BEN_SPEC,
    CHAT,
    INBOX,
    SERVICE_PORT,
    SLACK_AGENTS_ENV,
    TG_SECRET,
    TG_TOKEN,
    ada_has_it,
    agent_writes,
    assigned_thread,
    buttons,
    card_text,
    configure,
    conversation_row,
    in_channel,
    members,
    out_messages,
    parents,
    press,
    relay,
    replies,
    slack_calls,
    telegram_customer,
    telegram_sent,
    transcript,
)

pytestmark = pytest.mark.slow

SANDBOX_ENV = SLACK_AGENTS_ENV


async def eventually(what: str, check: Callable[[], Awaitable[Any]], log: Callable[[], str]) -> Any:
    deadline = time.monotonic() + 30
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after 30 s\n{log()[-4000:]}")
        await asyncio.sleep(0.2)


async def test_a_telegram_customer_an_agent_in_a_slack_thread_and_a_private_note(
    sqlite_url: str,
    sqlite_database: Database,
    fake: httpx.AsyncClient,
    sandbox_url: str,
    tmp_path: Path,
) -> None:
    ids = await members(sqlite_database, ADA_SPEC, {**BEN_SPEC, "availability": "offline"})
    url, port = sandbox_url, SERVICE_PORT
    service = start_heliograph(
        ["serve"],
        {
            "HELIOGRAPH_DATABASE_URL": sqlite_url,
            "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
            "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "HELIOGRAPH_SLACK_API_BASE": f"{url}/slack/api/",
            "HELIOGRAPH_SLACK_INBOX_CHANNEL": INBOX,
            "HELIOGRAPH_TELEGRAM_BOT_TOKEN": TG_TOKEN,
            "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
            "HELIOGRAPH_TELEGRAM_API_BASE": f"{url}/telegram",
            "HELIOGRAPH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "HELIOGRAPH_RUN_SCHEDULER": "false",
            "HELIOGRAPH_MEDIA_DIR": str(tmp_path / "media"),
            "HELIOGRAPH_TRANSLATION_ENABLED": "true",
            "HELIOGRAPH_TRANSLATION_PROVIDER": "libre",
            "HELIOGRAPH_TRANSLATION_URL": f"{url}/libretranslate",
        },
        tmp_path / "serve.log",
        port,
    )
    try:
        written = await fake.post(
            "/_sandbox/say/telegram",
            json={
                "text": "Onde está meu pedido?",
                "from": CHAT,
                "first_name": "Rosa",
                "last_name": "Costa",
                "language_code": "pt",
            },
        )
        assert written.status_code == 200, written.text + service.log()[-2000:]

        async def thread() -> list[dict[str, Any]] | None:
            messages = await in_channel(fake)
            tops = parents(messages)
            return messages if tops and len(replies(messages, tops[0])) >= 2 else None

        messages = await eventually("Slack thread", thread, service.log)
        (parent,) = parents(messages)
        card = card_text(parent)
        assert "Rosa Costa on Telegram" in card
        assert "Language: pt" in card and "Journey: Discovery" in card
        assert "their time (America/Sao_Paulo)" not in card  # Telegram gives no zone...
        assert "their time unknown" in card  # ...and the card says so rather than guess
        assert f"Assignee: <@{ADA}>" in card  # Ada is on shift and online; Ben is offline
        assert buttons(parent) == ["hg_claim", "hg_resolve", "hg_handoff", "hg_snooze"]
        assert parent["text"].startswith(f"<@{ADA}>")  # the notification mentions her
        assigned, first = replies(messages, parent)
        assert "Ada Lovelace" in assigned["text"]  # why she has it, in words

        async def translated() -> str | None:  # posted at once, updated when translated
            line = next(m for m in await in_channel(fake) if m["ts"] == first["ts"])
            return str(line["text"]) if "_pt:_" in line["text"] else None

        assert await eventually("translated line", translated, service.log) == (
            "*Rosa Costa:* Where is my order?\n> _pt:_ Onde está meu pedido?"
        )

        for text in (
            "Your order ships tomorrow.",
            "note: carrier ticket #42 filed",
            "Thank you for your patience.",
        ):  # the sandbox signs each as Slack would and posts it to serve
            answer = await fake.post(
                "/_sandbox/slack/agent",
                json={"user": ADA, "channel": INBOX, "thread_ts": parent["ts"], "text": text},
            )
            assert answer.status_code == 200, answer.text

        async def both_sent() -> list[str] | None:
            sent = await telegram_sent(fake)
            return sent if len(sent) >= 2 else None

        # The 200s came after the commits; the replies reach Telegram in order and in
        # Portuguese; the note never does.
        assert await eventually("Telegram replies", both_sent, service.log) == [
            "Seu pedido será enviado amanhã.",
            "Obrigado pela sua paciência.",
        ]
        async with sqlite_database.read_session() as session:
            notes = (await session.execute(select(Note))).scalars().all()
            out = (
                (await session.execute(select(Message).where(Message.direction == "out")))
                .scalars()
                .all()
            )
        assert [(n.text, n.author_id) for n in notes] == [("carrier ticket #42 filed", ids["Ada"])]
        assert [(m.channel, m.author_id) for m in out] == [("telegram", ids["Ada"])] * 2

        final = await in_channel(fake)
        (parent,) = parents(final)
        shown = transcript([parent, *replies(final, parent)], {ADA: "Ada Lovelace"})
        print("\n--- the Slack thread as Ada sees it ---\n" + shown)
        assert "note: carrier ticket #42 filed" in shown  # her note stays in Slack only
    finally:
        service.stop()


# --- in-process ---------------------------------------------------------------------------


async def test_the_thread_shows_the_customer_in_the_agents_language_with_their_own_words(
    client: httpx.AsyncClient,
    database: Database,
    slack_agents: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = slack_agents
    configure(
        monkeypatch,
        str(fake.base_url),
        HELIOGRAPH_TRANSLATION_ENABLED="true",
        HELIOGRAPH_TRANSLATION_PROVIDER="libre",
        HELIOGRAPH_TRANSLATION_URL=f"{fake.base_url}/libretranslate",
    )
    await members(database, ADA_SPEC)
    await telegram_customer(database, "Onde está meu pedido?", language="pt")

    async def translated() -> str | None:
        messages = await in_channel(fake)
        lines = [m["text"] for m in messages if m.get("thread_ts") and "Rosa" in m["text"]]
        return lines[0] if lines and "Where is my order?" in lines[0] else None

    line = await run_jobs_until(database, translated)
    # Ada reads English; the customer's words stay beside it.
    assert line == "*Rosa Costa:* Where is my order?\n> _pt:_ Onde está meu pedido?"


async def test_an_unsigned_or_badly_signed_thread_reply_is_refused(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    _, parent = await ada_has_it(database, fake)
    signed = await fake.post(
        "/_sandbox/slack/agent",
        json={
            "user": ADA,
            "channel": INBOX,
            "thread_ts": parent["ts"],
            "text": "Hi",
            "relay": True,
        },
    )
    request = signed.json()
    forged = {**request["headers"], "X-Slack-Signature": "v0=" + "0" * 64}
    unsigned = {"Content-Type": "application/json"}
    for headers in (forged, unsigned):
        answer = await client.post(request["path"], content=request["body"], headers=headers)
        assert answer.status_code == 403, answer.text
    await run_jobs(database)
    assert await out_messages(database) == []
    assert await telegram_sent(fake) == []


async def test_edits_and_deletes_in_slack_resend_nothing(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    _, parent = await ada_has_it(database, fake)
    ts = await agent_writes(client, fake, ADA, parent, "It ships today.")
    await run_jobs(database)
    assert await telegram_sent(fake) == ["It ships today."]

    await relay(
        client,
        fake,
        "/_sandbox/slack/agent",
        user=ADA,
        channel=INBOX,
        action="edit",
        ts=ts,
        text="It ships tomorrow.",
    )
    await relay(
        client, fake, "/_sandbox/slack/agent", user=ADA, channel=INBOX, action="delete", ts=ts
    )
    await run_jobs(database)

    assert await telegram_sent(fake) == ["It ships today."]  # nothing resent, nothing recalled
    assert [m.text for m in await out_messages(database)] == ["It ships today."]


async def test_a_slack_retry_of_the_same_reply_sends_it_once(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    _, parent = await ada_has_it(database, fake)
    await agent_writes(client, fake, ADA, parent, "On its way.", retry=2)  # 3 deliveries
    await run_jobs(database)

    assert await telegram_sent(fake) == ["On its way."]
    assert len(await out_messages(database)) == 1


async def test_someone_not_on_the_team_is_ignored_and_logged(
    client: httpx.AsyncClient,
    database: Database,
    slack_agents: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = slack_agents
    _, parent = await ada_has_it(database, fake)
    await fake.post(
        "/_sandbox/slack/users",
        json={"id": "U0VISITOR1", "real_name": "A Visitor", "email": "visitor@elsewhere.example"},
    )
    with caplog.at_level(logging.WARNING, logger="surfaces.slack_inbound"):
        await agent_writes(client, fake, "U0VISITOR1", parent, "I can answer that!")
        await agent_writes(client, fake, "U0VISITOR1", parent, "note: sneaky")
    await run_jobs(database)

    assert await telegram_sent(fake) == []
    assert await out_messages(database) == []
    async with database.read_session() as session:
        assert (await session.execute(select(func.count()).select_from(Note))).scalar() == 0
    assert "U0VISITOR1 is not a team member" in caplog.text


async def test_a_member_is_matched_by_email_the_first_time_and_by_slack_id_after(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    ids = await members(database, {"name": "Cleo Park"})  # no Slack id on the team record
    await fake.post(
        "/_sandbox/slack/users",
        json={"id": "U0CLEO0001", "real_name": "Cleo Park", "email": "Cleo.Park@team.example"},
    )
    await telegram_customer(database, "Where is my order?")
    parent = await assigned_thread(database, fake)
    assert "Assignee: Cleo Park" in card_text(parent)  # no mention: her Slack id is unknown

    await agent_writes(client, fake, "U0CLEO0001", parent, "Checking now.")
    await agent_writes(client, fake, "U0CLEO0001", parent, "Found it.")
    await run_jobs(database)

    assert await telegram_sent(fake) == ["Checking now.", "Found it."]
    assert {m.author_id for m in await out_messages(database)} == {ids["Cleo"]}
    async with database.read_session() as session:
        cleo = await session.get(TeamMember, ids["Cleo"])
    assert cleo is not None and cleo.slack_user_id == "U0CLEO0001"
    assert len(await slack_calls(fake, "users.info")) == 1  # by id from then on


async def test_a_lost_answer_or_a_rate_limit_never_posts_twice(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    await members(database, ADA_SPEC)
    # Slack posts the parent but its answer is lost (500), then rate-limits for a second.
    await fake.post("/_sandbox/slack/lose-next", json={"method": "chat.postMessage"})
    await telegram_customer(database, "Where is my order?")
    await run_jobs(database)
    await fake.post(
        "/_sandbox/fail", json={"provider": "slack", "mode": "429", "seconds": 1, "retry_after": 1}
    )
    parent = await assigned_thread(database, fake)

    messages = await in_channel(fake)
    assert len(parents(messages)) == 1  # one parent, though two posts of it were tried
    assert [m["text"] for m in replies(messages, parent)][1:] == [
        "*Rosa Costa:* Where is my order?"
    ]
    async with database.read_session() as session:
        (thread,) = (await session.execute(select(SlackAgentThread))).scalars().all()
        post = await session.get(SlackAgentPost, f"parent:{thread.id}")
    assert thread.ts == parent["ts"] and post is not None and post.ts == parent["ts"]
    assert len(await slack_calls(fake, "chat.postMessage")) == 3  # parent, assigned, line
    assert len(await slack_calls(fake, "conversations.history")) == 1  # found, not reposted


async def test_lines_of_several_threads_go_together_and_a_lost_answer_costs_only_its_thread(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    """Three customers' follow-ups wait for the same sync batch; Slack takes the first line
    but its answer is lost. The other two threads' lines are recorded in that batch; the
    lost one's thread is looked up on the retry, not posted again: each line once."""
    fake = slack_agents
    await members(database, ADA_SPEC)
    names = ("Rosa Costa", "Ivo Neto", "Lia Prado")
    for n, name in enumerate(names):
        await receive(
            database, f"first-{n}", f"chat-{n}", text="Hello", channel="telegram", name=name
        )
    await run_jobs(database)
    for n in range(3):
        await receive(
            database, f"again-{n}", f"chat-{n}", text=f"Follow-up {n}", channel="telegram"
        )
    await fake.post("/_sandbox/slack/lose-next", json={"method": "chat.postMessage"})
    await run_jobs(database)

    async def all_posted() -> bool:
        async with database.read_session() as session:
            states = (await session.execute(select(SlackAgentPost.state))).scalars().all()
        shown = "\n".join(m["text"] for m in await in_channel(fake))
        return set(states) == {"posted"} and all(f"Follow-up {n}" in shown for n in range(3))

    assert await run_jobs_until(database, all_posted, within=20)
    messages = await in_channel(fake)
    assert len(parents(messages)) == 3
    for n, name in enumerate(names):
        (parent,) = [p for p in parents(messages) if name in card_text(p)]
        lines = [m["text"] for m in replies(messages, parent)]
        assert lines.count(f"*{name}:* Follow-up {n}") == 1, lines


def card_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (parent,) = parents(messages)
    return parent


async def test_buttons_hand_off_to_the_queue_claim_snooze_and_resolve(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    # Ben is never on shift: routing gives the conversation to Ada, and nobody takes a
    # handoff from her, so it goes back to the queue, where Ben claims it himself.
    ids = await members(database, ADA_SPEC, {**BEN_SPEC, "hours": {}})
    await fake.post("/_sandbox/slack/users", json={"id": BEN, "real_name": "Ben Okafor"})
    conversation = (await telegram_customer(database, "Where is my order?")).conversation_id
    parent = await assigned_thread(database, fake)
    value = str(conversation)

    await press(client, fake, ADA, parent, "hg_handoff", value)
    await run_jobs(database)
    assert (await conversation_row(database, conversation)).assignee_id is None
    (told,) = await slack_calls(fake, "chat.postEphemeral")
    assert (told["user"], told["text"]) == (ADA, "Nobody is eligible now: back to the queue.")
    assert "Assignee: nobody yet" in card_text(card_of(await in_channel(fake)))

    await press(client, fake, BEN, parent, "hg_claim", value)
    await run_jobs(database)
    assert (await conversation_row(database, conversation)).assignee_id == ids["Ben"]
    card = card_of(await in_channel(fake))
    assert f"Assignee: <@{BEN}>" in card_text(card)
    assert any("claimed by Ben Okafor" in m["text"] for m in replies(await in_channel(fake), card))

    await press(client, fake, ADA, parent, "hg_claim", value)  # Ada is too late now
    await run_jobs(database)
    refused = (await slack_calls(fake, "chat.postEphemeral"))[-1]
    assert refused["user"] == ADA and "assigned to someone else" in refused["text"]

    await press(client, fake, BEN, parent, "hg_snooze", f"{value}:4")
    await run_jobs(database)
    snoozed = await conversation_row(database, conversation)
    assert snoozed.status == "snoozed" and snoozed.snoozed_until is not None
    assert "Status: snoozed" in card_text(card_of(await in_channel(fake)))

    await press(client, fake, BEN, parent, "hg_resolve", value)
    await run_jobs(database)
    assert (await conversation_row(database, conversation)).status == "resolved"
    card = card_of(await in_channel(fake))
    assert "Status: resolved" in card_text(card) and buttons(card) == []


async def test_a_handoff_notice_with_the_context_is_acknowledged_in_the_thread(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    ids = await members(database, ADA_SPEC, BEN_SPEC)
    result = await telegram_customer(database, "Where is my order?")
    parent = await assigned_thread(database, fake)
    holder = (await conversation_row(database, result.conversation_id)).assignee_id
    giver, taker = (ADA, BEN) if holder == ids["Ada"] else (BEN, ADA)
    await agent_writes(client, fake, giver, parent, "note: waiting on the carrier")
    await press(client, fake, giver, parent, "hg_handoff", str(result.conversation_id))

    async def notice() -> dict[str, Any] | None:
        found = [m for m in replies(await in_channel(fake), parent) if "Handoff from" in m["text"]]
        return found[0] if found else None

    posted = await run_jobs_until(database, notice)
    assert posted, await in_channel(fake)
    assert "waiting on the carrier" in posted["text"]  # the previous agent's note
    assert "Where is my order?" in posted["text"]  # and what was said
    assert buttons(posted) == ["hg_ack"]
    assert f"Assignee: <@{taker}>" in card_text(card_of(await in_channel(fake)))

    await press(client, fake, taker, posted, "hg_ack", buttons_value(posted))
    await run_jobs(database)
    async with database.read_session() as session:
        (handoff,) = (await session.execute(select(Handoff))).scalars().all()
    assert handoff.state == "acknowledged"
    updated = next(m for m in await in_channel(fake) if m["ts"] == posted["ts"])
    assert buttons(updated) == [] and "Acknowledged by" in json.dumps(updated["blocks"])


def buttons_value(message: dict[str, Any]) -> str:
    return str(
        next(e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"])
    )


async def test_in_dm_mode_the_thread_is_in_the_agents_dm_and_is_not_a_customer(
    client: httpx.AsyncClient,
    database: Database,
    slack_agents: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = slack_agents
    configure(monkeypatch, str(fake.base_url), HELIOGRAPH_SLACK_AGENT_THREADS="dm")
    await members(database, ADA_SPEC)
    await telegram_customer(database, "Where is my order?")
    dm = "D" + ADA[1:]
    parent = await assigned_thread(database, fake, dm)
    assert await in_channel(fake) == []  # nothing in the inbox channel
    # A second customer's conversation goes to her DM too, without asking Slack for it again
    # (conversations.open is rate-limited: once per member, not per assignment).
    await receive(
        database, "7001:1", "7001", text="Do you ship to Lisbon?", channel="telegram", name="Ines"
    )
    await run_jobs(database)
    assert len(await slack_calls(fake, "conversations.open")) == 1
    assert sum("Do you ship to Lisbon?" in str(m) for m in await in_channel(fake, dm)) == 1

    await agent_writes(client, fake, ADA, parent, "Checking now.")
    await run_jobs(database)

    assert await telegram_sent(fake) == ["Checking now."]
    async with database.read_session() as session:
        rows = (await session.execute(select(Conversation.channel))).scalars().all()
    assert rows == ["telegram"] * 2  # her DM did not become a Slack customer's conversation


async def test_an_intervention_alert_arrives_in_the_thread_and_on_the_card(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:

    fake = slack_agents
    result, parent = await ada_has_it(database, fake, "My payment failed again")
    async with database.session() as session:
        customer = await session.get(Customer, result.customer_id)
        fields = {
            "customer_id": result.customer_id,
            "rule": "support_issue",
            "cause_key": "payments:2026-12-01",
            "reason": "Two failed payments this week",
            "suggested_message": "Shall I retry the payment with you?",
            "suggested_program_id": None,
            "owner_id": None,
            "auto_send": False,
            "send_after": None,
            "details": {"title": "Proactive outreach"},
        }
        row = Intervention(**fields)
        session.add(row)
        await session.flush()
        await jobs.publish(
            session, INTERVENTION_OPENED, opened_payload({**fields, "id": row.id}, customer)
        )
        await session.commit()
    await run_jobs(database)

    alert = [m["text"] for m in replies(await in_channel(fake), parent) if ":bell:" in m["text"]]
    assert alert == [
        ":bell: *Intervention: Proactive outreach* for Rosa Costa\n"
        "Two failed payments this week\n"
        "Suggested: “Shall I retry the payment with you?”"
    ]
    card = card_text(card_of(await in_channel(fake)))
    assert (
        f"• Proactive outreach (#{row.id}): suggested “Shall I retry the payment with you?”" in card
    )


async def test_two_workers_posting_the_same_line_post_it_once(
    database: Database, slack_agents: httpx.AsyncClient
) -> None:

    outcomes = await asyncio.gather(
        post_once("mirror:test:1", INBOX, "Where is my order?"),
        post_once("mirror:test:1", INBOX, "Where is my order?"),
        return_exceptions=True,
    )
    posted = [o for o in outcomes if isinstance(o, str)]
    waited = [o for o in outcomes if isinstance(o, jobs.Defer)]
    # The second either waits its turn (the first holds the key) or, if it came after the
    # first had finished, is handed the same ts; either way Slack got one post.
    assert posted and len(set(posted)) == 1 and len(posted) + len(waited) == 2, outcomes
    assert len(parents(await in_channel(slack_agents))) == 1
    # Its next turn finds the line posted and posts nothing.
    assert await post_once("mirror:test:1", INBOX, "Where is my order?") == posted[0]
    assert len(await slack_calls(slack_agents, "chat.postMessage")) == 1


async def test_a_worker_that_died_after_posting_is_not_followed_by_a_second_post(
    database: Database, slack_agents: httpx.AsyncClient
) -> None:

    # A worker posted (Slack has it, with our key in its metadata) and died before it
    # could note the ts: its lease has run out.
    first = await post_once("handoff:test", INBOX, "Handoff from Aiko")
    async with database.session() as session:
        row = await session.get(SlackAgentPost, "handoff:test")
        assert row is not None
        row.ts, row.state, row.lease_until = None, "sending", utcnow() - timedelta(seconds=1)
        await session.commit()

    assert await post_once("handoff:test", INBOX, "Handoff from Aiko") == first
    assert len(await slack_calls(slack_agents, "chat.postMessage")) == 1


async def test_a_parent_posted_but_not_noted_on_its_thread_is_noted_not_posted_again(
    database: Database, slack_agents: httpx.AsyncClient
) -> None:
    """A worker posted a thread's parent and recorded the post, then died before the
    thread kept its ts (as code before one commit for both could): the next assignment
    notes the ts on the thread; Slack gets no second parent."""
    result, parent = await ada_has_it(database, slack_agents)
    calls = len(await slack_calls(slack_agents, "chat.postMessage"))
    async with database.session() as session:
        (thread,) = (await session.execute(select(SlackAgentThread))).scalars().all()
        thread.ts = None
        await session.commit()

    (ada,) = await rows(database, TeamMember, TeamMember.name == "Ada Lovelace")
    await slack_threads.on_assigned(
        ConversationAssigned(
            conversation_id=result.conversation_id,
            assignment_id=0,
            member_id=ada.id,
            previous_member_id=ada.id,
            kind="manual",
            reason="",
        )
    )
    async with database.read_session() as session:
        (thread,) = (await session.execute(select(SlackAgentThread))).scalars().all()
    assert thread.ts == parent["ts"]
    assert len(parents(await in_channel(slack_agents))) == 1
    assert len(await slack_calls(slack_agents, "chat.postMessage")) == calls


async def test_the_card_shows_local_time_stage_and_value_and_web_replies_are_mirrored(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:

    fake = slack_agents
    await members(database, ADA_SPEC)
    result = await telegram_customer(database, "Where is my order?")
    async with database.session() as session:  # what the CRM knows before routing runs
        customer = await session.get(Customer, result.customer_id)
        assert customer is not None
        customer.journey_stage, customer.lifetime_value = "commitment", Decimal("1250.50")
        token = await create_token(session, "ada.lovelace@team.example")
        await session.commit()
    parent = await assigned_thread(database, fake)
    card = card_text(parent)
    assert re.search(r"\d\d:\d\d their time \(America/Sao_Paulo\)", card), card
    assert "Journey: Commitment · Lifetime value: 1250.50" in card

    sent = await client.post(
        f"/api/v1/conversations/{result.conversation_id}/reply",
        json={"text": "Answered from the web inbox"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sent.status_code == 202, sent.text
    await run_jobs(database)
    lines = [m["text"] for m in replies(await in_channel(fake), parent)]
    assert lines[-1] == "*Ada Lovelace* (reply): Answered from the web inbox"
    assert await telegram_sent(fake) == ["Answered from the web inbox"]


async def test_a_customers_edit_updates_their_line_in_the_thread(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    fake = slack_agents
    result, parent = await ada_has_it(database, fake, "Where is my order #1234?")
    async with database.read_session() as session:
        message = await session.get(Message, result.message_id)
        assert message is not None and message.provider_message_id is not None
    edited = await edit(
        database, "telegram", message.provider_message_id, "Where is my order #1243?"
    )
    assert edited == result.message_id
    await run_jobs(database)

    lines = [m["text"] for m in replies(await in_channel(fake), parent)]
    assert lines[1:] == ["*Rosa Costa:* Where is my order #1243?"]  # updated, not re-posted
    (update,) = await slack_calls(fake, "chat.update")
    assert update["text"] == "*Rosa Costa:* Where is my order #1243?"


async def test_edits_of_several_threads_update_together_and_a_lost_answer_retries_only_its_line(
    client: httpx.AsyncClient, database: Database, slack_agents: httpx.AsyncClient
) -> None:
    """Three customers edit their messages after the lines were mirrored; the updates wait
    for the same batch and Slack loses the answer to the first: every line ends up edited,
    and only the lost one is updated a second time."""
    fake = slack_agents
    await members(database, ADA_SPEC)
    names = ("Rosa Costa", "Ivo Neto", "Lia Prado")
    for n, name in enumerate(names):
        await receive(
            database, f"first-{n}", f"chat-{n}", text=f"Order {n}", channel="telegram", name=name
        )
    await run_jobs(database)
    await fake.post("/_sandbox/slack/lose-next", json={"method": "chat.update"})
    for n in range(3):
        assert await edit(database, "telegram", f"first-{n}", f"Order {n}, the blue one")

    async def all_edited() -> bool:
        shown = "\n".join(m["text"] for m in await in_channel(fake))
        return all(f"Order {n}, the blue one" in shown for n in range(3))

    assert await run_jobs_until(database, all_edited, within=20)
    messages = await in_channel(fake)
    for n, name in enumerate(names):
        (parent,) = [p for p in parents(messages) if name in card_text(p)]
        lines = [m["text"] for m in replies(messages, parent)]
        assert lines[1:] == [f"*{name}:* Order {n}, the blue one"], lines  # updated in place

    async def retried() -> bool:  # the lost answer's job runs again (after its back-off)
        return len(await slack_calls(fake, "chat.update")) >= 4

    assert await run_jobs_until(database, retried, within=30)
    await run_jobs(database)
    updates = [c["text"] for c in await slack_calls(fake, "chat.update")]
    assert len(updates) == 4, updates  # three, and the lost one again: the others once
