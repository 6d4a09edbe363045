"""The web app end to end in Chromium, against real ``heliograph serve`` processes (issue #16).

- Two members on two server processes (PostgreSQL) on the same conversation see each
  other's replies, and "… is replying", live, without reloading.
- The two flows of PRODUCT.md: the student journey (profile → stage and milestones →
  the next action → one click to write on the preferred channel, which the channel's
  sandbox fake receives) and the global handoff (the hand-off form proposes the next
  person on shift; "End my day" hands everything over → that person gets it with the
  context package, on their Telegram → the customer gets no message about it, only the
  conversation going on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from crm_core.profile import update_profile
from heliograph.db import Database
from inbox.models import Conversation, Message
from routing.team import create_token
from tests.utils.browser import LIVE_FLAG, member_page, wait_live
from tests.utils.crm_world import days_ago, ev, ingest, make_programs
from tests.utils.factories import make_member, receive
from tests.utils.http import TELEGRAM_TOKEN, TELEGRAM_WEBHOOK_SECRET
from tests.utils.processes import Service, eventually
from tests.utils.routing_world import ALWAYS, add_member, every_day
from tests.utils.sandbox import TELEGRAM_ENV

pytestmark = pytest.mark.slow

SANDBOX_ENV = TELEGRAM_ENV
SANDBOX_RESETS = ("/_sandbox/fail?provider=telegram", "/_sandbox/telegram")


async def _open_live(page: Any, path: str) -> None:
    """Go to ``path`` and wait until the page listens to the server's live events."""
    await page.goto(path)
    await wait_live(page)


async def test_two_browsers_on_two_server_processes_see_each_other_live(
    database: Database, two_web_servers: tuple[Service, Service], browser: Any
) -> None:
    server_a, server_b = two_web_servers
    async with database.session() as session:
        maya = (await make_member(session, "Maya Tan", "agent")).id
        omar = (await make_member(session, "Omar Haddad", "agent")).id
        await session.commit()
    cid = (await receive(database, "flow-live-1", "ken", text="Where is my lamp?")).conversation_id
    as_maya = await member_page(browser, server_a.url, maya)  # type: ignore[arg-type]
    as_omar = await member_page(browser, server_b.url, omar)  # type: ignore[arg-type]
    try:
        for page in (as_maya, as_omar):
            await page.context.add_init_script(LIVE_FLAG)
            await _open_live(page, f"/conversations/{cid}")
        # Neither page reloads from here on: a reload would drop this mark.
        await as_omar.evaluate("window.__hgSamePage = true")

        # Maya (server A) types: Omar (server B) sees that she is replying.
        await as_maya.locator("#reply-text").fill("Your lamp left the")
        omar_typing = as_omar.locator(f'[data-typing-for="{cid}"]')
        await omar_typing.wait_for(state="visible", timeout=10_000)
        assert "Maya Tan" in (await omar_typing.inner_text())
        # She sends: her reply shows in Omar's thread without a reload.
        maya_says = "Your lamp left the warehouse this morning."
        await as_maya.locator("#reply-text").fill(maya_says)
        async with as_maya.expect_navigation():  # her page comes back after the send
            await as_maya.get_by_role("button", name="Send reply").click()
        await as_omar.locator("#thread-live").get_by_text(maya_says).wait_for(timeout=10_000)
        assert await as_omar.evaluate("window.__hgSamePage === true")

        # The other way round: Omar (B) types and replies, Maya (A) sees both.
        await wait_live(as_maya)
        await as_maya.evaluate("window.__hgSamePage = true")
        await as_omar.locator("#reply-text").fill("Adding the tracking")
        maya_typing = as_maya.locator(f'[data-typing-for="{cid}"]')
        await maya_typing.wait_for(state="visible", timeout=10_000)
        assert "Omar Haddad" in (await maya_typing.inner_text())
        omar_says = "Adding the tracking link: it arrives Thursday."
        await as_omar.locator("#reply-text").fill(omar_says)
        await as_omar.get_by_role("button", name="Send reply").click()
        await as_maya.locator("#thread-live").get_by_text(omar_says).wait_for(timeout=10_000)
        assert await as_maya.evaluate("window.__hgSamePage === true")
        # Nobody is told that they themselves are replying.
        assert "Omar Haddad" not in (await omar_typing.text_content() or "")
    finally:
        await as_maya.context.close()
        await as_omar.context.close()


# --- the two flows of PRODUCT.md -------------------------------------------------------------

ANA_CHAT = "5550001"  # the student's Telegram chat
OLIVER_CHAT = "7770001"  # the US agent's Telegram chat with the team's bot


# ``heliograph serve`` with its workers, Telegram pointed at the sandbox's fake Bot API.
def _telegram_env(sandbox_url: str) -> dict[str, str]:
    return {
        "HELIOGRAPH_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET,
        "HELIOGRAPH_TELEGRAM_API_BASE": f"{sandbox_url}/telegram",
        "HELIOGRAPH_JOB_BACKOFF_BASE_S": "0.05",
        "HELIOGRAPH_JOB_BACKOFF_MAX_S": "0.5",
        # Members join while it runs: routing looks at the team again at every decision.
        "HELIOGRAPH_ROUTING_TEAM_CHECK_S": "0",
    }


async def _say(sandbox: httpx.AsyncClient, chat: str, text: str, first: str, last: str) -> None:
    """``chat`` writes ``text`` on Telegram (the fake delivers it to serve's webhook)."""
    body = {"text": text, "from": chat, "first_name": first, "last_name": last}
    answer = await sandbox.post("/_sandbox/say/telegram", json=body)
    assert answer.is_success, answer.text


async def _sent_to(sandbox: httpx.AsyncClient, chat: str) -> list[str]:
    """What the bot sent to ``chat``, oldest first."""
    answer = await sandbox.get(f"/_sandbox/telegram/chats/{chat}")
    return [m["text"] for m in answer.json()["sent"]]


async def _conversation_of_chat(database: Database, chat: str) -> Conversation | None:
    async with database.read_session() as session:
        stmt = select(Conversation).join(Message, Message.conversation_id == Conversation.id)  # type: ignore[arg-type]
        stmt = stmt.where(
            Message.channel == "telegram",
            Message.provider_message_id.startswith(f"{chat}:"),  # type: ignore[union-attr]
        )
        return (await session.execute(stmt)).scalars().first()


def _off_shift_now(zone: str) -> dict[str, list[list[str]]]:
    """Half an hour every day, twelve hours from now in ``zone``: off shift now."""
    start = datetime.now(ZoneInfo(zone)) + timedelta(hours=12)
    hour = start.hour
    return every_day([f"{hour:02d}:00", f"{hour:02d}:30"])


async def test_the_student_journey_then_the_global_handoff_in_the_browser(
    database: Database,
    sandbox: httpx.AsyncClient,
    sandbox_url: str,
    browser: Any,
    web_server_with: Callable[[Mapping[str, str]], Service],
) -> None:
    # Maya works from Kuala Lumpur; she is the only one on the team when Ana writes.
    async with database.session() as session:
        maya = await add_member(session, "Maya Tan", "Asia/Kuala_Lumpur", ALWAYS)
        await session.commit()
    service = web_server_with(_telegram_env(sandbox_url))
    pages: list[Any] = []
    try:
        await eventually(
            "setWebhook",
            lambda: _calls(sandbox, "setWebhook"),
            20,
            service,
        )
        await _say(
            sandbox, ANA_CHAT, "Hi! I finished my first month. What comes next?", "Ana", "Silva"
        )

        async def routed_to_maya() -> Conversation | None:
            found = await _conversation_of_chat(database, ANA_CHAT)
            return found if found is not None and found.assignee_id == maya.id else None

        conversation = await eventually("Ana's conversation for Maya", routed_to_maya, 30, service)
        ana = conversation.customer_id
        # Her learning platform reports her program, a lesson and a milestone.
        await make_programs(database)
        result = await ingest(
            database,
            [
                ev("purchase", "fl-p", ana, at=days_ago(20), program="mind-1", amount="99"),
                ev("lesson_completed", "fl-l", ana, at=days_ago(2), program="mind-1"),
                ev("milestone_reported", "fl-m", ana, at=days_ago(1), milestone="first month"),
            ],
        )
        assert result.errors == []
        async with database.session() as session:
            await update_profile(session, ana, {"preferred_channel": "telegram"})
            await session.commit()

        # --- 1. the student journey ---------------------------------------------------------
        as_maya = await member_page(browser, service.url, maya.id)  # type: ignore[arg-type]
        pages.append(as_maya)
        await as_maya.goto(f"/customers/{ana}")
        assert (await as_maya.locator("h1").inner_text()).startswith("Ana Silva")
        stage = as_maya.locator('.cu-journey [aria-current="step"]')
        assert await stage.inner_text() == "Transformation"
        assert await as_maya.locator(".cu-journey .cu-passed").count() == 5
        milestone = as_maya.locator(".cu-timeline .cu-milestone")
        assert await milestone.count() == 1 and await milestone.is_visible()
        next_action = as_maya.locator(".cu-intervention")
        assert await next_action.count() == 1
        assert "milestone celebration" in (await next_action.inner_text())
        assert "first month" in (await next_action.inner_text())
        write = as_maya.get_by_role("button", name="Write on telegram")
        await write.click()
        await as_maya.wait_for_url(f"**/conversations/{conversation.id}")
        assert await as_maya.locator(".facts").get_by_text("telegram").count() >= 1
        composer = as_maya.locator("#reply-text")
        maya_says = "Congratulations on your first month, Ana! Mindful Mastery is the next step."
        await composer.fill(maya_says)
        await as_maya.get_by_role("button", name="Send reply").click()

        async def ana_got_it() -> list[str]:
            return [t for t in await _sent_to(sandbox, ANA_CHAT) if t == maya_says]

        await eventually("Maya's reply on Ana's Telegram", ana_got_it, 30, service)

        # --- 2. the global handoff -------------------------------------------------------------
        # Oliver (New York) is on shift and reads the team's bot on Telegram; Sam is not on
        # shift now.
        async with database.session() as session:
            oliver = await add_member(session, "Oliver Bennett", "America/New_York", ALWAYS)
            sam_hours = _off_shift_now("America/Chicago")
            await add_member(session, "Sam Reed", "America/Chicago", sam_hours)
            token = await create_token(session, oliver.email)
            await session.commit()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as api:
            issued = await api.post(
                "/api/v1/team-members/me/telegram-link",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert issued.status_code == 201, issued.text
        await _say(sandbox, OLIVER_CHAT, issued.json()["bot_command"], "Oliver", "Bennett")

        # Before she goes, Maya leaves a private note for whoever takes over.
        await as_maya.goto(f"/conversations/{conversation.id}")
        await as_maya.get_by_role("tab", name="Private note").click()
        await as_maya.locator("#note-text").fill("She may want Mindful Mastery.")
        async with as_maya.expect_navigation():
            await as_maya.get_by_role("button", name="Add note").click()
        # The hand-off form proposes the next person on shift: Oliver, preselected.
        await as_maya.get_by_text("Hand off…").click()
        to = as_maya.locator('select[name="to_member_id"]')
        assert await to.input_value() == str(oliver.id)
        proposed = await to.locator("option:checked").inner_text()
        assert proposed.startswith("Oliver Bennett — New York") and "speaks en" in proposed
        package = as_maya.locator("[data-panel=handoff] .package")
        await package.wait_for(state="visible")
        shown = await package.inner_text()
        assert "Ana Silva" in shown and "What comes next?" in shown and maya_says in shown
        assert "She may want Mindful Mastery." in shown and '"messages"' not in shown

        # Maya's day ends: "End my day" from the inbox hands everything she holds over.
        await as_maya.goto("/")
        await as_maya.get_by_role("link", name="End my day").click()
        await as_maya.wait_for_url("**/end-of-day")
        row = as_maya.locator(f'.eod-row[data-conversation="{conversation.id}"]')
        assert "Oliver Bennett — New York" in (await row.locator(".proposal").inner_text())
        await as_maya.get_by_role("button", name="Hand off 1 conversation").click()
        await as_maya.wait_for_url("**/end-of-day?handed=1")
        assert "Handed off 1 conversation." in (
            await as_maya.locator("[role=status]").first.inner_text()
        )
        # Her "mine" is empty now; the thread says where it went.
        await as_maya.goto("/?view=mine")
        assert await as_maya.locator(f"#conv-{conversation.id}").count() == 0
        await as_maya.goto(f"/conversations/{conversation.id}")
        handed = as_maya.locator("#thread-live .handoff")
        await handed.wait_for(timeout=10_000)
        assert "Handed off to Oliver Bennett" in (await handed.inner_text())

        # Oliver's notice: on his Telegram, with the context package.
        async def oliver_notice() -> list[str]:
            return [t for t in await _sent_to(sandbox, OLIVER_CHAT) if t.startswith("🤝 Handoff")]

        (notice,) = await eventually("Oliver's handoff notice", oliver_notice, 30, service)
        assert f"#{conversation.id} from Maya Tan" in notice
        assert "Ana Silva" in notice and "What comes next?" in notice
        assert "📝 Maya Tan: She may want Mindful Mastery." in notice

        # His inbox ("mine") has it, and the conversation page shows the package.
        as_oliver = await member_page(browser, service.url, oliver.id)  # type: ignore[arg-type]
        pages.append(as_oliver)
        await as_oliver.goto("/")
        row = as_oliver.locator(f"#conv-{conversation.id}")
        await row.wait_for(timeout=10_000)
        assert "Ana Silva" in (await row.inner_text())
        await row.get_by_role("link", name="Ana Silva").click()
        await as_oliver.wait_for_url(f"**/conversations/{conversation.id}")
        assert await as_oliver.locator(".assignee").inner_text() == "Oliver Bennett"
        await as_oliver.locator("#thread-live .handoff summary").click()
        context = await as_oliver.locator("#thread-live .handoff .package").inner_text()
        assert "She may want Mindful Mastery." in context and "Ana Silva" in context

        # He goes on; Ana only ever saw the conversation continue, on the same chat.
        oliver_says = "Hi Ana, Oliver here: shall I tell you about Mindful Mastery?"
        await as_oliver.locator("#reply-text").fill(oliver_says)
        await as_oliver.get_by_role("button", name="Send reply").click()

        async def ana_got_both() -> list[str]:
            sent = await _sent_to(sandbox, ANA_CHAT)
            return sent if oliver_says in sent else []

        sent = await eventually("Oliver's reply on Ana's Telegram", ana_got_both, 30, service)
        assert sent == [maya_says, oliver_says]
        assert all("hand" not in t.lower() for t in sent)
    finally:
        for page in pages:
            await page.context.close()


async def _calls(sandbox: httpx.AsyncClient, method: str) -> list[dict[str, Any]]:
    answer = await sandbox.get("/_sandbox/calls", params={"provider": "telegram", "method": method})
    return [c["params"] for c in answer.json()]
