"""The conversation page: the thread (original and translation, notes, system lines), every
action through the same service functions as the REST API (assign with routing's reason,
snooze in the agent's zone stored in UTC, priority and tags, resolve and reopen), a failed
reply's reason and retry, a private note, the translation preview, and the page in Chromium
at a phone's width."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update

from heliograph.db import Database
from heliograph.models import Job
from inbox import translation
from inbox.models import Conversation, Message, Note
from tests.utils.db import rows
from tests.utils.factories import make_member, receive
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
