"""The customer pages: search, the profile (journey map and moves, scores with their inputs,
milestones, interventions), merge for leads, export and erase for admins, and the profile
on a phone in a real browser."""

from __future__ import annotations

from typing import Any

import httpx

from crm_core.models import Customer, Intervention
from crm_core.profile import update_profile
from heliograph.db import Database
from inbox.models import Conversation
from tests.utils.crm_world import days_ago, ev, ingest, make_programs
from tests.utils.db import rows
from tests.utils.factories import make_member, receive
from tests.utils.web import signed_in

HTML = {"Accept": "text/html"}


async def _member(database: Database, role: str = "agent") -> int:
    async with database.session() as session:
        member = await make_member(session, f"Maya {role.title()}", role, timezone="Europe/Berlin")
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


async def _ana(database: Database) -> int:
    """Ana bought a program, did a lesson and reported a milestone (which opens an
    intervention and moves her to Transformation)."""
    await make_programs(database)
    who: dict[str, Any] = {"name": "Ana Silva", "timezone": "America/Sao_Paulo", "language": "pt"}
    batch = [
        ev("purchase", "p", at=days_ago(20), program="mind-1", amount="99"),
        ev("lesson_completed", "l", at=days_ago(2), program="mind-1"),
        ev("milestone_reported", "ms", at=days_ago(1), milestone="first month"),
    ]
    for e in batch:
        e["customer"].update(who)
    await ingest(database, batch)
    (ana,) = await rows(database, Customer, Customer.search_name.startswith("ana"))  # type: ignore[attr-defined]
    return int(ana.id)


async def test_search_and_the_profile_explain_the_customer(
    client: httpx.AsyncClient, database: Database
) -> None:
    ana = await _ana(database)
    signed_in(client, await _member(database))
    found = await client.get("/customers?q=ana", headers=HTML)
    assert found.status_code == 200 and f'href="/customers/{ana}"' in found.text
    by_email = await client.get("/customers?q=ana@example.com", headers=HTML)
    assert f'href="/customers/{ana}"' in by_email.text
    none = await client.get("/customers?q=nobody-here", headers=HTML)
    assert "No customer matches" in none.text

    page = await client.get(f"/customers/{ana}", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert "Ana Silva" in text and "America/Sao_Paulo" in text
    # The journey map: seven stages in order, the current one marked, and the moves.
    journey = text.split('class="cu-journey"')[1].split("</ol>")[0]
    stages = ["Discovery", "Exploration", "Commitment", "Engagement", "Integration",
              "Transformation", "Advocacy"]  # fmt: skip
    assert [journey.index(s) for s in stages] == sorted(journey.index(s) for s in stages)
    current = journey.split('aria-current="step"')[1].split("</li>")[0]
    assert "Transformation" in current and journey.count("aria-current") == 1
    moves = text.split('class="cu-moves"')[1].split("</ul>")[0]
    assert "<strong>Transformation</strong>" in moves and "(milestone)" in moves
    # Each score beside its inputs (as crm_core stored them).
    assert 'data-score="engagement"' in text and "active days 30" in text
    assert 'data-score="health"' in text and "churn risk" in text
    assert 'data-score="lifetime_value"' in text and "purchases" in text
    # Programs, milestones celebrated in the timeline, the open intervention.
    assert "Mindful Mornings" in text
    assert "cu-milestone" in text and "🎉" in text
    (opened,) = await rows(database, Intervention)
    assert f'id="intervention-{opened.id}"' in text


async def test_interventions_done_and_dismissed_from_the_profile(
    client: httpx.AsyncClient, database: Database
) -> None:
    ana = await _ana(database)
    csrf = signed_in(client, await _member(database))
    (opened,) = await rows(database, Intervention)
    url = f"/customers/{ana}/interventions/{opened.id}"
    refused = await client.post(f"{url}/done", headers=HTML)  # no CSRF token
    assert refused.status_code == 403
    done = await client.post(f"{url}/done", data={"csrf_token": csrf}, headers=HTML)
    assert done.status_code == 303 and done.headers["location"] == f"/customers/{ana}"
    (after,) = await rows(database, Intervention)
    assert after.state == "done" and after.resolved_by.startswith("member:")
    page = await client.get(f"/customers/{ana}", headers=HTML)
    assert f'id="intervention-{opened.id}"' not in page.text
    again = await client.post(f"{url}/dismiss", headers={"X-CSRF-Token": csrf, **HTML})
    assert again.status_code == 409  # already resolved, as the API says


async def test_roles_merge_export_and_erase(client: httpx.AsyncClient, database: Database) -> None:
    ana = await _ana(database)
    dup_event = ev("purchase", "dup", "ana.other@example.com", program="mind-1", amount="5")
    assert (await ingest(database, [dup_event])).errors == []
    (dup,) = await rows(database, Customer, Customer.id != ana)
    agent_csrf = signed_in(client, await _member(database, "agent"))
    agent = {"X-CSRF-Token": agent_csrf, **HTML}
    profile = await client.get(f"/customers/{ana}?merge_q=ana", headers=HTML)
    assert "cu-merge-h" not in profile.text and "cu-gdpr-h" not in profile.text
    assert (
        await client.post(f"/customers/{ana}/merge", data={"source_id": dup.id}, headers=agent)
    ).status_code == 403
    assert (
        await client.post(f"/customers/{ana}/erase", data={"confirm_name": "x"}, headers=agent)
    ).status_code == 403
    assert (await client.get(f"/customers/{ana}/export", headers=HTML)).status_code == 403

    lead_csrf = signed_in(client, await _member(database, "lead"))
    search = await client.get(f"/customers/{ana}?merge_q=ana.other@example.com", headers=HTML)
    assert f'name="source_id" value="{dup.id}"' in search.text
    merged = await client.post(
        f"/customers/{ana}/merge", data={"source_id": dup.id, "csrf_token": lead_csrf}
    )
    assert merged.status_code == 303
    (gone,) = await rows(database, Customer, Customer.id == dup.id)
    assert gone.merged_into_id == ana
    lead = {"X-CSRF-Token": lead_csrf, **HTML}
    assert (
        await client.post(
            f"/customers/{ana}/erase", data={"confirm_name": "Ana Silva"}, headers=lead
        )
    ).status_code == 403

    admin_csrf = signed_in(client, await _member(database, "admin"))
    exported = await client.get(f"/customers/{ana}/export")
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    assert "Ana Silva" in exported.text and isinstance(exported.json(), dict)
    wrong = await client.post(
        f"/customers/{ana}/erase", data={"confirm_name": "Ana", "csrf_token": admin_csrf}
    )
    assert wrong.status_code == 303 and "notice=" in wrong.headers["location"]
    (kept,) = await rows(database, Customer, Customer.id == ana)
    assert kept.erased_at is None and kept.display_name == "Ana Silva"
    erased = await client.post(
        f"/customers/{ana}/erase", data={"confirm_name": "Ana Silva", "csrf_token": admin_csrf}
    )
    assert erased.status_code == 303
    (blank,) = await rows(database, Customer, Customer.id == ana)
    assert blank.erased_at is not None and "Ana Silva" not in (blank.display_name or "")
    after = await client.get(f"/customers/{ana}", headers=HTML)
    assert after.status_code == 200 and "Ana Silva" not in after.text


async def test_the_profile_on_a_phone(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    ana = await _ana(database)
    page = await browser_page(await _member(database, "admin"), width=375)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"/customers/{ana}")
    assert (await page.locator("h1").inner_text()).startswith("Ana Silva")
    current = page.locator('.cu-journey [aria-current="step"]')
    assert await current.inner_text() == "Transformation"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    # Sections stack: each starts below the one before, at the same left edge.
    boxes = [await s.bounding_box() for s in await page.locator(".cu-page > section").all()]
    assert len(boxes) >= 6
    assert all(b is not None for b in boxes)
    lefts = {round(b["x"]) for b in boxes if b}
    assert len(lefts) == 1
    tops = [b["y"] for b in boxes if b]
    assert tops == sorted(tops)
    # Erase stays disabled until the name is typed.
    erase = page.locator("button[data-erase]")
    assert await erase.is_disabled()
    await page.fill("#cu-erase-name", "Ana Silva")
    assert await erase.is_enabled()
    assert errors == []


async def test_write_opens_the_conversation_on_the_channel_an_intervention_would_use(
    client: httpx.AsyncClient, database: Database
) -> None:
    csrf = signed_in(client, await _member(database))
    await receive(database, "m1", "tg-ana", channel="telegram", text="hola")
    (conversation,) = await rows(database, Conversation)
    customer = conversation.customer_id
    written = await client.post(f"/customers/{customer}/write", data={"csrf_token": csrf})
    assert written.status_code == 303
    assert written.headers["location"] == f"/conversations/{conversation.id}"
    async with database.session() as session:
        await update_profile(session, customer, {"preferred_channel": "sms"})
        await session.commit()
    refused = await client.post(f"/customers/{customer}/write", data={"csrf_token": csrf})
    assert refused.status_code == 303 and "notice=" in refused.headers["location"]
    page = await client.get(refused.headers["location"], headers=HTML)
    assert "no identity on sms" in page.text
