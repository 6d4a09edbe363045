"""Agents in Slack in tests (the fixtures ``fake``, the sandbox's fake Slack and
Telegram, and ``slack_agents``, the app with agent threads on): what a test does there
(a customer writes on Telegram, an agent writes or presses a button in Slack) or reads
back (the inbox channel, the cards, what reached the customer).

The fixtures are in ``tests/surfaces/conftest.py``; a module that uses them sets
``SANDBOX_ENV = SLACK_AGENTS_ENV``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from heliograph.db import Database
from inbox.ingest import AcceptResult
from inbox.models import Conversation, Message
from routing import snapshot
from surfaces import slack_posts
from tests.utils.factories import receive
from tests.utils.jobs import run_jobs_until
from tests.utils.processes import free_port
from tests.utils.routing_world import add_member
from tests.utils.slack import BOT_TOKEN, SIGNING_SECRET, slack_env

INBOX = "C0INBOX001"
ADA, BEN = "U0ADA00001", "U0BEN00001"
TG_TOKEN = "4242:test-telegram-token-0123456789"
TG_SECRET = "test-telegram-webhook-secret-0123"
CHAT = "5550001"


SERVICE_PORT = free_port()  # where ``heliograph serve`` listens, in a test that runs it
# The sandbox for a module with agents in Slack (fake Slack and fake Telegram): a module
# sets ``SANDBOX_ENV = SLACK_AGENTS_ENV``; its Slack requests go to ``SERVICE_PORT``.
SLACK_AGENTS_ENV = {
    "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
    "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "HELIOGRAPH_TELEGRAM_BOT_TOKEN": TG_TOKEN,
    "HELIOGRAPH_PUBLIC_URL": f"http://127.0.0.1:{SERVICE_PORT}",
}


def configure(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> None:
    for key, value in {
        "HELIOGRAPH_SLACK_INBOX_CHANNEL": INBOX,
        "HELIOGRAPH_TELEGRAM_BOT_TOKEN": TG_TOKEN,
        "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
        "HELIOGRAPH_TELEGRAM_API_BASE": f"{url}/telegram",
        **extra,
    }.items():
        monkeypatch.setenv(key, value)
    slack_env(monkeypatch, f"{url}/slack/api/")  # resets the settings
    # A new fake Slack: the DM channels this process learnt were another fake's.
    slack_posts.forget_dm_channels()


# --- helpers ----------------------------------------------------------------------------


async def members(database: Database, *specs: dict[str, Any]) -> dict[str, int]:
    async with database.session() as session:
        found = {}
        for spec in specs:
            member = await add_member(session, **spec)
            found[member.name.split()[0]] = int(member.id)  # type: ignore[arg-type]
        await session.commit()
    snapshot.recheck()
    return found


ADA_SPEC: dict[str, Any] = {"name": "Ada Lovelace", "slack_user_id": ADA}
BEN_SPEC: dict[str, Any] = {"name": "Ben Okafor", "slack_user_id": BEN}


_seq = iter(range(1, 10_000))


async def telegram_customer(database: Database, text: str, **profile: str) -> AcceptResult:
    profile = {"name": "Rosa Costa", "timezone": "America/Sao_Paulo", **profile}
    return await receive(
        database, f"{CHAT}:{next(_seq)}", CHAT, text=text, channel="telegram", **profile
    )


async def in_channel(fake: httpx.AsyncClient, channel: str = INBOX) -> list[dict[str, Any]]:
    answer = await fake.get(f"/_sandbox/slack/messages/{channel}")
    return list(answer.json())


def parents(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("thread_ts") in (None, m["ts"])]


def replies(messages: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("thread_ts") == parent["ts"] and m["ts"] != parent["ts"]]


def card_text(parent: dict[str, Any]) -> str:
    return "\n".join(
        b["text"]["text"] for b in parent.get("blocks") or [] if b.get("type") == "section"
    )


def buttons(parent: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in parent.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]


async def relay(client: httpx.AsyncClient, fake: httpx.AsyncClient, path: str, **body: Any) -> Any:
    """The sandbox signs the request as Slack would; we post it to the in-process app."""
    signed = await fake.post(path, json={**body, "relay": True})
    assert signed.status_code == 200, signed.text
    request = signed.json()
    answer = await client.post(
        request["path"], content=request["body"].encode(), headers=request["headers"]
    )
    assert answer.status_code == 200, answer.text
    return request


async def agent_writes(
    client: httpx.AsyncClient,
    fake: httpx.AsyncClient,
    user: str,
    parent: dict[str, Any],
    text: str,
    **kw: Any,
) -> str:
    """A member writes in the conversation's thread; the ts of their message."""
    sent = await relay(
        client,
        fake,
        "/_sandbox/slack/agent",
        user=user,
        channel=parent["channel"],
        thread_ts=parent["ts"],
        text=text,
        **kw,
    )
    return str(json.loads(sent["body"])["event"]["ts"])


async def press(
    client: httpx.AsyncClient,
    fake: httpx.AsyncClient,
    user: str,
    message: dict[str, Any],
    action: str,
    value: str,
) -> None:
    await relay(
        client,
        fake,
        "/_sandbox/slack/click",
        user=user,
        channel=message["channel"],
        ts=message["ts"],
        action_id=action,
        value=value,
    )


async def telegram_sent(fake: httpx.AsyncClient) -> list[str]:
    calls = await fake.get(
        "/_sandbox/calls", params={"provider": "telegram", "method": "sendMessage"}
    )
    return [c["params"]["text"] for c in calls.json()]


async def slack_calls(fake: httpx.AsyncClient, method: str) -> list[dict[str, Any]]:
    calls = await fake.get("/_sandbox/calls", params={"provider": "slack", "method": method})
    return [c["params"] for c in calls.json()]


async def assigned_thread(
    database: Database, fake: httpx.AsyncClient, channel: str = INBOX
) -> dict[str, Any]:
    """Run the jobs until the conversation's parent and first mirrored line are in Slack."""

    async def ready() -> dict[str, Any] | None:
        messages = await in_channel(fake, channel)
        tops = parents(messages)
        return tops[0] if tops and replies(messages, tops[0]) else None

    parent = await run_jobs_until(database, ready)
    assert parent, f"no thread in {channel}: {await in_channel(fake, channel)}"
    return parent


async def ada_has_it(
    database: Database, fake: httpx.AsyncClient, text: str = "Where is my order?"
) -> tuple[AcceptResult, dict[str, Any]]:
    """Ada (on shift, in Slack) gets a Telegram customer's conversation; its parent."""
    await members(database, ADA_SPEC)
    result = await telegram_customer(database, text)
    return result, await assigned_thread(database, fake)


def transcript(messages: list[dict[str, Any]], names: dict[str, str]) -> str:
    """The thread as an agent sees it (for the README)."""
    top, *rest = messages
    labels = [
        f"[{e.get('text', e.get('placeholder', {})).get('text')}]"
        for b in top.get("blocks") or []
        if b.get("type") == "actions"
        for e in b["elements"]
    ]
    lines = [f"[Heliograph] {card_text(top)}", f"    {' '.join(labels)}"]
    for m in rest:
        who = "Heliograph" if m.get("bot_id") else names.get(m["user"], m["user"])
        text = str(m["text"]).replace("\n", "\n      ")
        lines.append(f"  ↳ [{who}] {text}")
    return "\n".join(lines)


# --- end to end, as processes ---------------------------------------------------------


async def conversation_row(database: Database, conversation_id: int) -> Conversation:
    async with database.read_session() as session:
        found = await session.get(Conversation, conversation_id)
        assert found is not None
        return found


async def out_messages(database: Database) -> list[Message]:
    async with database.read_session() as session:
        rows = await session.execute(select(Message).where(Message.direction == "out"))
        return list(rows.scalars().all())
