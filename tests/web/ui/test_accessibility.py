"""Accessibility of the web app (issue #16): axe-core (through axe-playwright-python) finds no
serious or critical violation on any page, in the light and the dark theme (the member's
stored choice, and 'As the system' with a dark system preference), on a desktop and on a
375-px phone, where nothing scrolls sideways either.

One Chromium visits every page per theme: the pages are seeded so none is empty (a
conversation with a note and a failed reply, a customer with a journey, scores and an open
intervention, canned responses, a pending invite)."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from sqlalchemy import update

from crm_core.models import Customer
from heliograph.db import Database
from heliograph.models import Job
from inbox import canned, conversations
from inbox.models import Message
from routing import credentials
from tests.utils.crm_world import days_ago, ev, ingest, make_programs
from tests.utils.db import rows
from tests.utils.factories import make_member, receive

BLOCKING = ("serious", "critical")
# (name, the member's stored ui_theme, the system's colour scheme, the page is dark)
THEMES = [
    ("light", "light", "dark", False),
    ("dark", "dark", "light", True),
    ("system-dark", "system", "dark", True),
]
DARK_BG = "rgb(18, 16, 22)"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres", marks=pytest.mark.skip(reason="pages are the same; axe runs on SQLite")
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


async def _seed(database: Database) -> dict[str, Any]:
    """Three admins (one per theme) and a page's worth of everything they look at."""
    await make_programs(database)
    batch = [
        ev("purchase", "p", at=days_ago(20), program="mind-1", amount="99"),
        ev("lesson_completed", "l", at=days_ago(2), program="mind-1"),
        ev("milestone_reported", "ms", at=days_ago(1), milestone="first month"),
    ]
    for e in batch:
        e["customer"].update({"name": "Ana Silva", "timezone": "America/Sao_Paulo"})
    await ingest(database, batch)
    (ana,) = await rows(database, Customer, Customer.search_name.startswith("ana"))  # type: ignore[attr-defined]
    got = await receive(database, "m1", "cust-1", text="Hello, where is my order?")
    cid = got.conversation_id
    members: dict[str, int] = {}
    async with database.session() as session:
        for name, stored, _, _ in THEMES:
            member = await make_member(
                session,
                f"Maya {name.title()}",
                "admin",
                email=f"maya.{name}@team.example",
                timezone="Asia/Kuala_Lumpur",
                answers_customers=True,
                ui_theme=stored,
            )
            members[name] = int(member.id)  # type: ignore[arg-type]
        admin = await make_member(session, "Ada Admin", "admin")
        newbie = await make_member(session, "Nia New", "agent")
        await credentials.create_invite(session, newbie, created_by=admin.id)
        await canned.create(
            session, admin, shortcut="hello", title="Hello", text="Hi {{customer.first_name}}",
            team=True,
        )  # fmt: skip
        await canned.create(session, admin, shortcut="thanks", title="Thanks", text="Thank you!")
        await conversations.add_note(session, cid, "VIP, be kind", admin.id)
        sent = await conversations.reply(session, cid, "On its way", admin.id)
        await session.commit()
        await session.execute(
            update(Message)
            .where(Message.id == sent.id)  # type: ignore[arg-type]
            .values(delivery_status="failed", delivery_error="number unreachable")
        )
        await session.execute(
            update(Job).where(Job.dedupe_key == f"deliver:{sent.id}").values(status="dead")  # type: ignore[arg-type]
        )
        await session.commit()
    return {"members": members, "conversation": cid, "customer": int(ana.id)}  # type: ignore[arg-type]


def _report(where: str, violations: list[dict[str, Any]]) -> str:
    lines = [where]
    for v in violations:
        lines.append(f"  {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:8]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
            if node.get("failureSummary"):
                lines.append("      " + node["failureSummary"].replace("\n", " ")[:300])
    return "\n".join(lines)


async def _keyboard_focus_shows(page: Any) -> str:
    """Tab to the first control (the skip link): its outline, as drawn."""
    await page.keyboard.press("Tab")
    drawn = """() => { const e = document.activeElement, s = getComputedStyle(e);
                      return `${e.className} ${s.outlineStyle} ${s.outlineWidth}`; }"""
    return str(await page.evaluate(drawn))


async def test_no_serious_violation_and_no_sideways_scroll(
    database: Database, browser_page: Any
) -> None:
    seeded = await _seed(database)
    pages = [
        "/sign-in",
        "/?view=all",  # the inbox, with its rows
        f"/conversations/{seeded['conversation']}",
        "/customers?q=ana",  # the search, with a result
        f"/customers/{seeded['customer']}",
        "/canned",
        "/me",
        "/team/invites",
        "/conversations/999999",  # not found, for a signed-in member
        "/no-such-page",  # no route: the page cannot know who asks
    ]
    shows = {  # what the seeded page must show, so that axe checks it
        "/?view=all": 'class="inbox-row',
        f"/conversations/{seeded['conversation']}": "number unreachable",
        f"/customers/{seeded['customer']}": "cu-milestone",
        "/customers?q=ana": "Ana Silva",
        "/canned": "/hello",
        "/team/invites": "nia.agent@team.example",
    }
    missing = ("/conversations/999999", "/no-such-page")
    signed_out = ("/sign-in", "/no-such-page")  # in the system's scheme
    axe = Axe()
    failures: list[str] = []
    for name, _, scheme, dark in THEMES:  # one browser context per theme
        page = await browser_page(seeded["members"][name], color_scheme=scheme)
        for width in (1280, 375):
            await page.set_viewport_size({"width": width, "height": 900})
            for path in pages:
                answer = await page.goto(path)
                assert answer is not None and answer.status == (404 if path in missing else 200)
                where = f"{path} in {name} at {width} px"
                assert shows.get(path, "") in await page.content(), f"{where}: not seeded"
                if path not in signed_out:
                    bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
                    assert (bg == DARK_BG) == dark, f"{where}: background {bg}"
                if path == "/?view=all":
                    focus = await _keyboard_focus_shows(page)
                    assert focus == "skip solid 3px", f"{where}: keyboard focus drawn as {focus}"
                result = await axe.run(page)
                blocking = [v for v in result.response["violations"] if v["impact"] in BLOCKING]
                if blocking:
                    failures.append(_report(where, blocking))
                if width == 375:
                    wide = await page.evaluate("document.scrollingElement.scrollWidth")
                    if wide > 375:
                        failures.append(f"{where}: scrolls sideways ({wide} px)")
    assert not failures, "\n".join(failures)
