"""The team's Telegram chats in tests: the app in-process behind its webhook, the sandbox's
fake Bot API (its own process) as Telegram. Updates are built by the sandbox as Telegram
would build them (``deliver: false``, with ``reply_to_message`` for a reply) and posted to
the app with the webhook's secret; what the bot sent comes back from the sandbox, per chat,
with each message_id."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from channels.telegram import SECRET_HEADER, close_bot
from heliograph import jobs
from heliograph.db import Database
from heliograph.settings import reset_settings
from routing.models import TeamMember
from routing.team import create_token
from surfaces import telegram_send
from tests.utils.factories import make_member
from tests.utils.http import TELEGRAM_TOKEN as TOKEN
from tests.utils.http import TELEGRAM_WEBHOOK_SECRET as WEBHOOK_SECRET
from tests.utils.jobs import run_jobs
from tests.utils.routing_world import ALWAYS
from tests.utils.sandbox import TELEGRAM_ENV, Sandboxes


class TeamBot:
    def __init__(self, app: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: Database) -> None:
        self.app, self.sandbox, self.db = app, sandbox, db

    async def update(self, chat: str, text: str, reply_to: int | None = None) -> dict[str, Any]:
        body = {"text": text, "from": chat, "reply_to": reply_to, "deliver": False}
        body |= {"first_name": "Chat", "last_name": chat}
        built = await self.sandbox.post("/_sandbox/say/telegram", json=body)
        assert built.status_code == 200, built.text
        update: dict[str, Any] = built.json()["update"]
        return update

    async def post(self, update: dict[str, Any]) -> dict[str, Any]:
        answer = await self.app.post(
            "/webhooks/telegram",
            content=json.dumps(update).encode(),
            headers={"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET},
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def say(self, chat: str, text: str, reply_to: int | None = None) -> dict[str, Any]:
        """``chat`` writes ``text`` (a reply to ``reply_to``); the webhook's answer."""
        return await self.post(await self.update(chat, text, reply_to))

    async def sent(self, chat: str) -> list[dict[str, Any]]:
        """What the bot sent to ``chat``, oldest first."""
        found: list[dict[str, Any]] = (
            await self.sandbox.get(f"/_sandbox/telegram/chats/{chat}")
        ).json()["sent"]
        return found

    async def texts(self, chat: str) -> list[str]:
        return [m["text"] for m in await self.sent(chat)]

    async def last(self, chat: str, starting: str) -> dict[str, Any]:
        """The latest message to ``chat`` whose text starts with ``starting``."""
        found = [m for m in await self.sent(chat) if m["text"].startswith(starting)]
        assert found, f"nothing starting {starting!r} in {await self.texts(chat)}"
        return found[-1]

    async def settle(self) -> dict[str, int]:
        return await run_jobs(self.db)

    async def script(self, method: str, *answers: str) -> None:
        body = {"method": method, "answers": list(answers)}
        (await self.sandbox.post("/_sandbox/telegram/script", json=body)).raise_for_status()

    async def link(self, auth: dict[str, str], chat: str) -> dict[str, Any]:
        """Ask the API for a code and send ``/link CODE`` from ``chat``; the API's answer."""
        issued = await self.app.post("/api/v1/team-members/me/telegram-link", headers=auth)
        assert issued.status_code == 201, issued.text
        await self.say(chat, issued.json()["bot_command"])
        await self.settle()
        code: dict[str, Any] = issued.json()
        return code

    async def member(
        self,
        name: str,
        role: str = "agent",
        chat: str | None = None,
        **fields: Any,
    ) -> tuple[TeamMember, dict[str, str]]:
        """A member on shift around the clock (with a bearer token); linked to ``chat``."""
        async with self.db.session() as session:
            fields.setdefault("weekly_hours", ALWAYS)
            fields.setdefault("languages", ["en"])
            member = await make_member(session, name=name, role=role, **fields)
            token = await create_token(session, member.email)
            await session.commit()
        auth = {"Authorization": f"Bearer {token}"}
        if chat is not None:
            await self.link(auth, chat)
        return member, auth

    async def count(self, model: Any, *where: Any) -> int:
        async with self.db.read_session() as session:
            stmt = select(func.count()).select_from(model).where(*where)
            return int((await session.execute(stmt)).scalar_one())

    async def rows(self, model: Any, *where: Any) -> list[Any]:
        async with self.db.read_session() as session:
            stmt = select(model).where(*where).order_by(model.id)
            return list((await session.execute(stmt)).scalars().all())


async def running_team_bot(
    client: httpx.AsyncClient,
    database: Database,
    sandboxes: Sandboxes,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[TeamBot]:
    """The team's bot (the ``team_bot`` fixture, in ``tests/conftest.py``): the app with
    Telegram on, against the fake Bot API of the sandbox started with ``TELEGRAM_ENV``
    (the module's own sandbox where its ``SANDBOX_ENV`` is that)."""
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    sandbox_url = sandboxes.url(TELEGRAM_ENV)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_API_BASE", f"{sandbox_url}/telegram")
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    # Members join mid-test: routing looks at the team again at every decision.
    monkeypatch.setenv("HELIOGRAPH_ROUTING_TEAM_CHECK_S", "0")
    reset_settings()
    # As at the start of a process with Telegram on; the subscriptions end with the test.
    pairs = [(listener.event, listener.kind) for listener in telegram_send.LISTENERS]
    added = [(event, kind) for event, kind in pairs if kind not in jobs.subscribers(event)]
    telegram_send.listen()
    try:
        async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
            await sandbox.delete("/_sandbox/calls")
            await sandbox.delete("/_sandbox/telegram")
            yield TeamBot(client, sandbox, database)
            await sandbox.delete("/_sandbox/telegram")
    finally:
        for event, kind in added:
            jobs.unsubscribe(event, kind)
    await close_bot()  # its HTTP session belongs to this test's event loop
