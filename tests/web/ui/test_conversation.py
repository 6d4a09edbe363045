"""The conversation page: the thread (original and translation, notes, system lines), every
action through the same service functions as the REST API (assign with routing's reason,
snooze in the agent's zone stored in UTC, priority and tags, resolve and reopen), a failed
reply's reason and retry, a private note, the translation preview, the router's suggestion
in the assign picker (and ``GET /api/v1/conversations/{id}/suggestion``), refusals shown on
the page, ``PATCH /api/v1/conversations/{id}``, ``?compose=reply|note``, a provider's
delivery status re-rendering the open thread, and the page in Chromium at a phone's width."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update

from heliograph import live
from heliograph.db import Database
from heliograph.models import Job
from inbox import intake, translation
from inbox.models import Conversation, Message, Note
from tests.utils.db import rows
from tests.utils.factories import make_member, member_with_token, receive
from tests.utils.routing_world import give, team, utc
from tests.utils.web import signed_in

HTML = {"Accept": "text/html"}


async def _member(database: Database, role: str = "lead", name: str = "Maya Tan") -> int:
    async with database.session() as session:
        member = await make_member(
            session, name, role, timezone="Asia/Kuala_Lumpur", answers_customers=True
        )
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


async def _conversation(database: Database) -> int:
    result = await receive(database, "m1", "cust-1", text="Hello, where is my order?")
    async with database.session() as session:
        await session.execute(
            update(Message)
            .where(Message.id == result.message_id)  # type: ignore[arg-type]
            .values(
                text="Hello, where is my order?",
                original_text="Hola, ¿dónde está mi pedido?",
                original_language="es",
                translation_status="done",
            )
        )
        await session.execute(
            update(Conversation)
            .where(Conversation.id == result.conversation_id)  # type: ignore[arg-type]
            .values(language="es")
        )
        await session.commit()
    return result.conversation_id


async def test_the_page_and_every_action(client: httpx.AsyncClient, database: Database) -> None:
    maya = await _member(database)
    ben = await _member(database, "agent", "Ben Ortiz")
    cid = await _conversation(database)
    csrf = signed_in(client, maya)
    h = {"X-CSRF-Token": csrf}

    page = await client.get(f"/conversations/{cid}", headers=HTML)
    assert page.status_code == 200
    assert "Hola, ¿dónde está mi pedido?" in page.text and "Hello, where is my order?" in page.text
    assert "data-toggle-original" in page.text and 'hx-trigger="sse:conversation-' in page.text
    assert "/static/conversation.js" in page.text and 'data-typing-source="' in page.text
    assert (await client.get("/conversations/999999", headers=HTML)).status_code == 404
    # Without the CSRF token a post is refused.
    refused = await client.post(f"/conversations/{cid}/status/resolved", headers=HTML)
    assert refused.status_code == 403

    # Assign: the thread shows routing's reason.
    r = await client.post(f"/conversations/{cid}/assign", data={"member_id": ben}, headers=h)
    assert r.status_code == 303
    (conv,) = await rows(database, Conversation, Conversation.id == cid)
    assert conv.assignee_id == ben
    thread = await client.get(f"/conversations/{cid}/thread", headers=HTML)
    assert "Assigned to Ben Ortiz" in thread.text and 'class="reason"' in thread.text

    # Snooze at 09:00 in Kuala Lumpur (UTC+8) is 01:00 UTC.
    r = await client.post(
        f"/conversations/{cid}/snooze", data={"until": "2030-01-02T09:00"}, headers=h
    )
    assert r.status_code == 303
    (conv,) = await rows(database, Conversation, Conversation.id == cid)
    assert conv.status == "snoozed"
    until = (
        conv.snoozed_until.replace(tzinfo=UTC)
        if conv.snoozed_until.tzinfo is None
        else conv.snoozed_until
    )
    assert until == datetime(2030, 1, 2, 1, 0, tzinfo=UTC)
    assert "Snoozed until" in (await client.get(f"/conversations/{cid}/thread")).text

    # Priority and tags, resolve and reopen.
    await client.post(f"/conversations/{cid}/priority", data={"priority": "urgent"}, headers=h)
    await client.post(
        f"/conversations/{cid}/tags", data={"tags": "Billing, refund,billing"}, headers=h
    )
    bad = await client.post(f"/conversations/{cid}/priority", data={"priority": "meh"}, headers=h)
    assert bad.status_code == 422
    (conv,) = await rows(database, Conversation, Conversation.id == cid)
    assert conv.priority == "urgent" and conv.topic_tags == ["billing", "refund"]
    await client.post(f"/conversations/{cid}/status/resolved", headers=h)
    assert (await rows(database, Conversation, Conversation.id == cid))[0].status == "resolved"
    await client.post(f"/conversations/{cid}/status/open", headers=h)
    assert (await rows(database, Conversation, Conversation.id == cid))[0].status == "open"

    # Claim back (a lead assigns themselves).
    claim = await client.post(f"/conversations/{cid}/assign", data={"member_id": maya}, headers=h)
    assert claim.status_code == 303
    assert (await rows(database, Conversation, Conversation.id == cid))[0].assignee_id == maya


async def test_note_reply_failure_retry_and_preview(
    client: httpx.AsyncClient, database: Database, monkeypatch: Any
) -> None:
    maya = await _member(database)
    cid = await _conversation(database)
    h = {"X-CSRF-Token": signed_in(client, maya)}

    # A note is private: stored as a note, no message, nothing queued.
    before = len(await rows(database, Message))
    await client.post(f"/conversations/{cid}/note", data={"text": "VIP, be kind"}, headers=h)
    (note,) = await rows(database, Note)
    assert note.text == "VIP, be kind" and len(await rows(database, Message)) == before
    assert "Private note" in (await client.get(f"/conversations/{cid}/thread")).text

    # Preview: the same translation service the outbox uses, into the customer's language.
    seen: list[tuple[str, str, str]] = []

    async def fake(text: str, source: str, target: str) -> tuple[str, bool]:
        seen.append((text, source, target))
        return "Hola <b>", False

    monkeypatch.setattr(translation, "translate_cached", fake)
    p = await client.post(f"/conversations/{cid}/preview", data={"text": "Hi"}, headers=h)
    assert p.status_code == 200 and "Hola &lt;b&gt;" in p.text and 'lang="es"' in p.text
    assert seen == [("Hi", "en", "es")]

    # A reply is queued; when its delivery dies the reason shows, and Retry re-queues it.
    r = await client.post(f"/conversations/{cid}/reply", data={"text": "On its way"}, headers=h)
    assert r.status_code == 303
    reply = (await rows(database, Message, Message.direction == "out"))[-1]
    assert reply.delivery_status == "queued"
    assert "queued" in (await client.get(f"/conversations/{cid}/thread")).text
    async with database.session() as session:
        await session.execute(
            update(Message)
            .where(Message.id == reply.id)  # type: ignore[arg-type]
            .values(delivery_status="failed", delivery_error="number unreachable")
        )
        await session.execute(
            update(Job).where(Job.dedupe_key == f"deliver:{reply.id}").values(status="dead")  # type: ignore[arg-type]
        )
        await session.commit()
    thread = await client.get(f"/conversations/{cid}/thread")
    assert "number unreachable" in thread.text and f"/messages/{reply.id}/retry" in thread.text
    r = await client.post(f"/conversations/{cid}/messages/{reply.id}/retry", headers=h)
    assert r.status_code == 303
    (job,) = await rows(database, Job, Job.dedupe_key == f"deliver:{reply.id}")
    assert job.status == "pending" and job.attempts == 0
    (again,) = await rows(database, Message, Message.id == reply.id)
    assert again.delivery_status == "queued" and again.delivery_error is None
    twice = await client.post(f"/conversations/{cid}/messages/{reply.id}/retry", headers=h)
    assert twice.status_code == 409


async def test_the_conversation_in_chromium_on_a_phone(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    maya = await _member(database)
    cid = await _conversation(database)
    page = await browser_page(maya, width=375)
    errors: list[str] = []
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "/live" not in m.text and "live.js" not in m.text
            else None
        ),
    )
    # The inbox's n key links here: the composer opens on the note tab, the cursor in it.
    await page.goto(f"/conversations/{cid}?compose=note")
    assert await page.evaluate("document.activeElement.id") == "note-text"
    assert not await page.locator("#reply-text").is_visible()
    await page.locator("#tab-reply").click()
    assert await page.evaluate("document.activeElement.id") == "reply-text"
    await page.goto(f"/conversations/{cid}")
    original = page.locator(".shown-original").first
    assert not await original.is_visible()
    await page.locator("[data-toggle-original]").first.click()
    assert await original.is_visible()
    await page.locator("[data-toggle-all-originals]").click()
    assert not await original.is_visible()
    await page.keyboard.press("r")
    assert await page.evaluate("document.activeElement.id") == "reply-text"
    await page.fill("#reply-text", "On its way")
    await page.locator(".reply-form button[type=submit]").click()
    await page.wait_for_url(f"**/conversations/{cid}")
    assert await page.locator(".msg-out .delivery .status").last.inner_text() == "queued"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    position = await page.evaluate("getComputedStyle(document.querySelector('.composer')).position")
    assert position == "sticky"


async def test_the_assign_picker_suggests_the_routers_pick_and_refusals_show_on_the_page(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids = await team(
        database,
        {
            "name": "Maya Tan",
            "role": "lead",
            "answers_customers": True,
            "timezone": "Asia/Kuala_Lumpur",
            "languages": ("es", "en"),
            "expertise": ("billing",),
            "capacity": 5,
        },
        {"name": "Ben Ortiz", "timezone": "Europe/Madrid", "capacity": 5},
    )
    maya, ben = ids["Maya"], ids["Ben"]
    for n in range(2):  # Maya has two open already
        other = await receive(database, f"load-{n}", f"other-{n}")
        await give(database, other.conversation_id, maya, utc(2026, 1, 1))
    cid = await _conversation(database)  # in Spanish
    h = {"X-CSRF-Token": signed_in(client, maya)}
    await client.post(f"/conversations/{cid}/tags", data={"tags": "billing"}, headers=h)

    page = (await client.get(f"/conversations/{cid}", headers=HTML)).text
    suggested = re.search(r'data-suggestion="(\d+)">\s*Suggested: ([^<]*)</p>', page)
    assert suggested is not None and int(suggested[1]) == maya
    assert suggested[2].startswith("Maya Tan — Kuala Lumpur ")
    assert suggested[2].endswith(", speaks es, knows billing, 2/5 open")
    assert f'<option value="{maya}" selected>Maya Tan (suggested)</option>' in page
    # The REST API answers the same function's suggestion.
    _, auth = await member_with_token(database, "agent", "Api Reader")
    api = await client.get(f"/api/v1/conversations/{cid}/suggestion", headers=auth)
    assert api.status_code == 200
    body = api.json()
    assert (body["member_id"], body["load"], body["capacity"]) == (maya, 2, 5)
    assert body["speaks"] == "es" and body["knows"] == ["billing"] and body["nobody"] is None
    assert body["reason"].endswith("speaks es, knows billing, 2/5 open")
    missing = await client.get("/api/v1/conversations/999999/suggestion", headers=auth)
    assert missing.status_code == 404

    # Maya assigns it as suggested; then Ben, an agent, may neither claim it nor hand it
    # off: the page comes back (HTML, not JSON) with the reason, and nothing changed.
    assigned = await client.post(
        f"/conversations/{cid}/assign", data={"member_id": maya}, headers=h
    )
    assert assigned.status_code == 303
    h = {"X-CSRF-Token": signed_in(client, ben)}
    claim = await client.post(f"/conversations/{cid}/assign", data={"member_id": ben}, headers=h)
    assert claim.status_code == 409 and claim.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in claim.text
    assert "is assigned to someone else; ask a lead to move it" in claim.text
    handoff = await client.post(f"/conversations/{cid}/handoff", data={"note": "x"}, headers=h)
    assert handoff.status_code == 409 and handoff.headers["content-type"].startswith("text/html")
    assert "agents may hand over only their own conversations" in handoff.text
    bad = await client.post(f"/conversations/{cid}/assign", data={"member_id": "abc"}, headers=h)
    assert bad.status_code == 422 and "Pick a member from the list" in bad.text
    (conv,) = await rows(database, Conversation, Conversation.id == cid)
    assert conv.assignee_id == maya
    assert await rows(database, Note, Note.conversation_id == cid) == []  # the note rolled back
    # A refused note keeps what was typed, on the note tab.
    empty = await client.post(f"/conversations/{cid}/note", data={"text": "  "}, headers=h)
    assert empty.status_code == 422 and 'role="alert"' in empty.text
    assert re.search(r'id="panel-note"[^>]*data-tab-panel="note">', empty.text)


async def test_patch_priority_and_tags_over_the_api(
    client: httpx.AsyncClient, database: Database
) -> None:
    cid = await _conversation(database)
    _, auth = await member_with_token(database, "agent")
    r = await client.patch(
        f"/api/v1/conversations/{cid}",
        json={"priority": "high", "tags": ["Refund", " billing ", "refund"]},
        headers=auth,
    )
    assert r.status_code == 200
    (conv,) = await rows(database, Conversation, Conversation.id == cid)
    assert conv.priority == "high" and conv.topic_tags == ["refund", "billing"]
    assert r.json()["topic_tags"] == ["refund", "billing"]
    # Only the tags: the priority stays.
    r = await client.patch(f"/api/v1/conversations/{cid}", json={"tags": []}, headers=auth)
    assert r.status_code == 200 and r.json()["priority"] == "high" and r.json()["topic_tags"] == []
    bad = await client.patch(f"/api/v1/conversations/{cid}", json={"priority": "meh"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"] == "priority must be one of low, normal, high, urgent"
    unknown = await client.patch(
        f"/api/v1/conversations/{cid}", json={"colour": "red"}, headers=auth
    )
    assert unknown.status_code == 422
    null = await client.patch(f"/api/v1/conversations/{cid}", json={"priority": None}, headers=auth)
    assert null.status_code == 422
    gone = await client.patch("/api/v1/conversations/999999", json={"tags": []}, headers=auth)
    assert gone.status_code == 404
    assert (await rows(database, Conversation, Conversation.id == cid))[0].priority == "high"


async def test_compose_opens_the_composer_on_its_tab(
    client: httpx.AsyncClient, database: Database
) -> None:
    maya = await _member(database)
    cid = await _conversation(database)
    signed_in(client, maya)

    def tab_of(html: str) -> tuple[str, str]:
        shown = re.findall(r'id="panel-(\w+)"[^>]*data-tab-panel="\w+">', html)
        focused = re.findall(r'id="(\w+-text)"[^>]*autofocus', html.replace("\n", " "))
        return shown[0], focused[0] if focused else ""

    note = (await client.get(f"/conversations/{cid}?compose=note", headers=HTML)).text
    assert tab_of(note) == ("note", "note-text")
    assert re.search(r'id="tab-note"[^>]*aria-selected="true"', note)
    reply = (await client.get(f"/conversations/{cid}?compose=reply", headers=HTML)).text
    assert tab_of(reply) == ("reply", "reply-text")
    plain = (await client.get(f"/conversations/{cid}?compose=<b>", headers=HTML)).text
    assert tab_of(plain) == ("reply", "") and "&lt;b&gt;" not in plain


async def test_a_delivery_status_from_the_provider_re_renders_the_open_thread(
    client: httpx.AsyncClient, database: Database
) -> None:
    maya = await _member(database)
    cid = await _conversation(database)
    h = {"X-CSRF-Token": signed_in(client, maya)}
    await client.post(f"/conversations/{cid}/reply", data={"text": "On its way"}, headers=h)
    reply = (await rows(database, Message, Message.direction == "out"))[-1]
    async with database.session() as session:  # the outbox sent it: the provider's id
        await session.execute(
            update(Message)
            .where(Message.id == reply.id)  # type: ignore[arg-type]
            .values(delivery_status="sent", external_id="out-1")
        )
        await session.commit()

    subscription = live.subscribe()
    try:
        outcome = await intake.receive([intake.StatusUpdate(reply.channel, "out-1", "delivered")])
        assert outcome.statuses_applied == 1
        event = await asyncio.wait_for(subscription.get(), 5)
        assert event == (f"conversation-{cid}", {"conversation_id": cid})
        thread = (await client.get(f"/conversations/{cid}/thread")).text
        assert re.search(
            r'class="delivery delivery-delivered">\s*<span class="status">delivered', thread
        )
        # The same status again changes nothing, and nothing is published.
        await intake.receive([intake.StatusUpdate(reply.channel, "out-1", "delivered")])
        assert subscription.queue.empty()
        # Failed, with the provider's reason: published, shown with Retry.
        await intake.receive(
            [intake.StatusUpdate(reply.channel, "out-1", "failed", "30003 unreachable")]
        )
        assert await asyncio.wait_for(subscription.get(), 5) == event
        thread = (await client.get(f"/conversations/{cid}/thread")).text
        assert "30003 unreachable" in thread and f"/messages/{reply.id}/retry" in thread
    finally:
        subscription.close()


async def test_retry_of_a_message_of_another_conversation_is_a_404(
    client: httpx.AsyncClient, database: Database
) -> None:
    maya = await _member(database)
    cid = await _conversation(database)
    other = (await receive(database, "m-other", "cust-2", text="Another one")).conversation_id
    h = {"X-CSRF-Token": signed_in(client, maya)}
    await client.post(f"/conversations/{cid}/reply", data={"text": "On its way"}, headers=h)
    reply = (await rows(database, Message, Message.direction == "out"))[-1]
    async with database.session() as session:
        await session.execute(
            update(Message).where(Message.id == reply.id).values(delivery_status="failed")  # type: ignore[arg-type]
        )
        await session.execute(
            update(Job).where(Job.dedupe_key == f"deliver:{reply.id}").values(status="dead")  # type: ignore[arg-type]
        )
        await session.commit()
    wrong = await client.post(
        f"/conversations/{other}/messages/{reply.id}/retry", headers={**h, **HTML}
    )
    assert wrong.status_code == 404 and "No such message in this conversation" in wrong.text
    missing = await client.post(f"/conversations/{cid}/messages/999999/retry", headers=h)
    assert missing.status_code == 404
    (job,) = await rows(database, Job, Job.dedupe_key == f"deliver:{reply.id}")
    assert job.status == "dead"  # nothing was queued again
    right = await client.post(f"/conversations/{cid}/messages/{reply.id}/retry", headers=h)
    assert right.status_code == 303


async def test_priority_and_tags_re_render_the_open_pages(
    client: httpx.AsyncClient, database: Database
) -> None:
    maya = await _member(database)
    cid = await _conversation(database)
    h = {"X-CSRF-Token": signed_in(client, maya)}
    subscription = live.subscribe()
    try:
        r = await client.post(
            f"/conversations/{cid}/priority", data={"priority": "urgent"}, headers=h
        )
        assert r.status_code == 303
        seen = [await asyncio.wait_for(subscription.get(), 5) for _ in range(2)]
        data = {"conversation_id": cid}
        assert sorted(seen) == [(f"conversation-{cid}", data), ("inbox", data)]
        r = await client.post(
            f"/conversations/{cid}/tags", data={"tags": "billing, vip"}, headers=h
        )
        assert r.status_code == 303
        seen = [await asyncio.wait_for(subscription.get(), 5) for _ in range(2)]
        assert sorted(seen) == [(f"conversation-{cid}", data), ("inbox", data)]
        # A refused priority changes nothing and publishes nothing.
        bad = await client.post(f"/conversations/{cid}/priority", data={"priority": "x"}, headers=h)
        assert bad.status_code == 422 and subscription.queue.empty()
    finally:
        subscription.close()
