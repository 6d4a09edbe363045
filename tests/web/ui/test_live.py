"""Live updates in the web app: ``GET /live`` (SSE) on a real ``heliograph serve`` process,
fed by another process over PostgreSQL, and "X is replying…" (typing) between members."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx

from heliograph import live
from heliograph.db import Database
from tests.utils.factories import make_member, receive
from tests.utils.web import session_cookie, signed_in
from web.ui import live as live_ui
from web.ui.session import mask_csrf
from web.ui.sessions import COOKIE


async def _member(database: Database, name: str) -> int:
    async with database.session() as session:
        member = await make_member(session, name, "agent")
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


async def _events(response: httpx.Response, queue: asyncio.Queue[tuple[str, Any]]) -> None:
    name = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name is not None:
            await queue.put((name, json.loads(line.split(":", 1)[1])))
            name = None


async def _until(queue: asyncio.Queue[tuple[str, Any]], name: str) -> dict[str, Any]:
    while True:
        event, data = await asyncio.wait_for(queue.get(), 15)
        if event == name:
            return data  # type: ignore[no-any-return]


async def test_typing_is_rate_limited_and_needs_csrf(
    client: httpx.AsyncClient, database: Database
) -> None:
    maya = await _member(database, "Maya Tan")
    cid = (await receive(database, "typing-1")).conversation_id
    csrf = signed_in(client, maya)
    live_ui._last_typing.clear()
    subscription = live.subscribe()
    try:
        refused = await client.post(f"/conversations/{cid}/typing")
        assert refused.status_code in (400, 403)
        headers = {"X-CSRF-Token": csrf}
        for _ in range(3):
            answer = await client.post(f"/conversations/{cid}/typing", headers=headers)
            assert answer.status_code == 204
        event = await asyncio.wait_for(subscription.get(), 5)
        assert event == (
            f"typing-{cid}",
            {"conversation_id": cid, "member_id": maya, "name": "Maya Tan"},
        )
        assert subscription.queue.empty()  # one per 2 s per member and conversation
        missing = await client.post("/conversations/999999/typing", headers=headers)
        assert missing.status_code == 404
    finally:
        subscription.close()


async def test_live_stream_across_processes_and_typing(
    database: Database, web_server: Any, database_url: str
) -> None:
    maya, omar = await _member(database, "Maya Tan"), await _member(database, "Omar Haddad")
    cid = (await receive(database, "live-a")).conversation_id
    csrf = secrets.token_urlsafe(16)
    await live.start(database_url)  # this test is "process A"; the server is process B
    try:
        async with (
            httpx.AsyncClient(base_url=web_server.url, timeout=30) as as_maya,
            httpx.AsyncClient(base_url=web_server.url, timeout=30) as as_omar,
        ):
            as_maya.cookies.set(COOKIE, session_cookie(maya, csrf))
            as_omar.cookies.set(COOKIE, session_cookie(omar, csrf))
            maya_q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            omar_q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            async with (
                as_maya.stream("GET", "/live") as maya_stream,
                as_omar.stream("GET", "/live") as omar_stream,
            ):
                assert maya_stream.headers["content-type"].startswith("text/event-stream")
                readers = [
                    asyncio.create_task(_events(maya_stream, maya_q)),
                    asyncio.create_task(_events(omar_stream, omar_q)),
                ]
                try:
                    typed = await as_maya.post(
                        f"/conversations/{cid}/typing", headers={"X-CSRF-Token": mask_csrf(csrf)}
                    )
                    assert typed.status_code == 204
                    seen = await _until(omar_q, f"typing-{cid}")
                    assert seen["member_id"] == maya and seen["name"] == "Maya Tan"
                    if database_url.startswith("postgresql"):
                        # a message stored here (process A) shows on the server's stream
                        stored = await receive(database, "live-b")
                        assert stored.conversation_id == cid
                        assert await _until(maya_q, f"conversation-{cid}") == {
                            "conversation_id": cid
                        }
                    # Maya never hears her own typing
                    await as_omar.post(
                        f"/conversations/{cid}/typing", headers={"X-CSRF-Token": mask_csrf(csrf)}
                    )
                    heard = await _until(maya_q, f"typing-{cid}")
                    assert heard["member_id"] == omar
                finally:
                    for reader in readers:
                        reader.cancel()
    finally:
        await live.stop()


async def test_a_browser_shows_who_is_replying(
    database: Database, browser_page: Any, database_url: str
) -> None:
    maya, omar = await _member(database, "Maya Tan"), await _member(database, "Omar Haddad")
    cid = (await receive(database, "live-browser")).conversation_id
    pages = []
    for member in (maya, omar):
        page = await browser_page(member)
        await page.goto("/canned")
        await page.evaluate(
            """(cid) => {
                document.querySelectorAll('[sse-connect]').forEach((e) => e.remove());
                const shown = document.createElement('p');
                shown.setAttribute('data-typing-for', String(cid));
                shown.hidden = true;
                const box = document.createElement('textarea');
                box.setAttribute('data-typing-source', String(cid));
                document.body.append(shown, box);
            }""",
            cid,
        )
        await page.add_script_tag(url="/static/live.js")
        pages.append(page)
    maya_page, omar_page = pages
    await omar_page.wait_for_timeout(500)  # the EventSource opens
    await maya_page.fill(f'[data-typing-source="{cid}"]', "Hello")
    shown = omar_page.locator(f'[data-typing-for="{cid}"]')
    await shown.wait_for(state="visible", timeout=10_000)
    assert await shown.text_content() == "Maya Tan is replying…"
    assert await maya_page.locator(f'[data-typing-for="{cid}"]').is_hidden()
