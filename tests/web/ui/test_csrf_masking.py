"""How pages travel (issue #16, Slow 3G): compressed, with a CSRF token masked afresh on each
render (BREACH), versioned assets cached for good, the inbox's CSS inline under a CSP nonce,
the search form working without JavaScript, and the live stream never compressed."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

import httpx

from heliograph.db import Database
from tests.utils.factories import make_member, receive
from tests.utils.web import session_cookie
from web.ui.session import mask_csrf
from web.ui.sessions import COOKIE

HTML = {"Accept": "text/html"}
STATIC = Path(__file__).resolve().parents[3] / "web" / "ui" / "static"


async def _member(database: Database, name: str = "Maya Tan") -> int:
    async with database.session() as session:
        member = await make_member(session, name, "agent")
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


def _sign_in(client: httpx.AsyncClient, member_id: int) -> str:
    """Sign in; the session's bare (unmasked) CSRF token."""
    bare = secrets.token_urlsafe(16)
    client.cookies.set(COOKIE, session_cookie(member_id, bare))
    return bare


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def _language(client: httpx.AsyncClient) -> str:
    found = re.search(r'<html lang="(\w+)"', (await client.get("/me", headers=HTML)).text)
    assert found
    return found.group(1)


async def test_each_render_masks_the_token_and_each_mask_validates(
    client: httpx.AsyncClient, database: Database
) -> None:
    bare = _sign_in(client, await _member(database))
    first = _form_token((await client.get("/me", headers=HTML)).text)
    second = _form_token((await client.get("/me", headers=HTML)).text)
    assert first != second and bare not in first and bare not in second
    saved = await client.post(
        "/me", data={"language": "es", "theme": "dark", "csrf_token": first}, headers=HTML
    )
    assert saved.status_code == 200 and await _language(client) == "es"
    saved = await client.post(
        "/me", data={"language": "ru", "theme": "dark", "csrf_token": second}, headers=HTML
    )
    assert saved.status_code == 200 and await _language(client) == "ru"
    # htmx and fetch send it as a header: the page's body carries a masked one too
    page = (await client.get("/me", headers=HTML)).text
    found = re.search(r'data-csrf="([^"]+)"', page)
    assert found and bare not in found.group(1)
    by_header = await client.post(
        "/me",
        data={"language": "zh", "theme": "dark"},
        headers={**HTML, "X-CSRF-Token": found.group(1)},
    )
    assert by_header.status_code == 200 and await _language(client) == "zh"


async def test_a_bare_forged_or_tampered_token_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    bare = _sign_in(client, await _member(database))
    good = _form_token((await client.get("/me", headers=HTML)).text)
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    refused = [
        bare,  # the session's token itself, unmasked
        mask_csrf(secrets.token_urlsafe(16)),  # well formed, someone else's token
        flipped,  # one character of a real masked token changed
        good[:-2],  # cut short
        "not base64, at all?",
        "",
    ]
    for token in refused:
        answer = await client.post(
            "/me", data={"language": "es", "theme": "dark", "csrf_token": token}, headers=HTML
        )
        assert answer.status_code == 403, token
        assert "expired or did not come from this site" in answer.text
        by_header = await client.post(
            "/me",
            data={"language": "es", "theme": "dark"},
            headers={**HTML, "X-CSRF-Token": token},
        )
        assert by_header.status_code == 403, token
    assert await _language(client) == "en"  # nothing was saved


async def test_pages_are_compressed_when_asked_and_the_inbox_css_is_inline(
    client: httpx.AsyncClient, database: Database
) -> None:
    _sign_in(client, await _member(database))
    await receive(database, "gz-1", "cust-1", text="where is my parcel", name="Ann Lee")
    zipped = await client.get("/?view=all", headers={**HTML, "Accept-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.headers["content-encoding"] == "gzip"
    assert "Ann Lee" in zipped.text  # httpx decompressed it
    plain = await client.get("/?view=all", headers={**HTML, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and "Ann Lee" in plain.text
    # The critical CSS travels in the page, allowed by this response's nonce only.
    nonce = re.search(
        r"style-src 'self' 'nonce-([\w-]+)'", plain.headers["content-security-policy"]
    )
    assert nonce
    assert f'<style nonce="{nonce.group(1)}">' in plain.text
    assert ".inbox-row" in plain.text and 'rel="stylesheet"' not in plain.text
    other = await client.get("/?view=all", headers=HTML)
    assert nonce.group(1) not in other.headers["content-security-policy"]


async def test_versioned_assets_are_cached_for_good(
    client: httpx.AsyncClient, database: Database
) -> None:
    _sign_in(client, await _member(database))
    page = (await client.get("/me", headers=HTML)).text
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert any("htmx" in u for u in urls) and any(".css?v=" in u for u in urls)
    for url in urls:
        path, _, version = url.partition("?v=")
        # the version is the file's content: a changed file is a new URL
        digest = hashlib.sha256((STATIC / path.removeprefix("/static/")).read_bytes())
        assert version == digest.hexdigest()[:8], url
        answer = await client.get(url)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    bare = await client.get("/static/app.css")
    assert bare.status_code == 200 and "immutable" not in bare.headers.get("cache-control", "")


async def _network_asset_requests(cdp: Any, page: Any, path: str) -> list[str]:
    """The scripts and stylesheets a navigation fetched from the network (not from the cache;
    the favicon is left out: the browser fetches it on its own schedule)."""
    responses: dict[str, str] = {}
    from_cache: set[str] = set()

    def seen(event: dict[str, Any]) -> None:
        if event.get("type") in ("Script", "Stylesheet") and not event["response"].get(
            "fromDiskCache"
        ):
            responses[event["requestId"]] = event["response"]["url"]

    def cached(event: dict[str, Any]) -> None:
        from_cache.add(event["requestId"])

    cdp.on("Network.responseReceived", seen)
    cdp.on("Network.requestServedFromCache", cached)
    await page.goto(path)
    await page.wait_for_load_state("load")
    cdp.remove_listener("Network.responseReceived", seen)
    cdp.remove_listener("Network.requestServedFromCache", cached)
    return [url for request, url in responses.items() if request not in from_cache]


async def test_a_second_visit_asks_for_no_asset(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    page = await browser_page(await _member(database))
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    first = await _network_asset_requests(cdp, page, "/?view=all")
    assert any("htmx" in url for url in first) and any("inbox.js" in url for url in first)
    second = await _network_asset_requests(cdp, page, "/?view=mine")
    assert second == []
    assert await page.evaluate("typeof htmx") == "object"  # scripts ran, from the cache


async def test_the_inbox_search_works_without_javascript(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    await receive(database, "nojs-1", "cust-1", text="where is my parcel", name="Ann Lee")
    await receive(database, "nojs-2", "cust-2", text="refund please", name="Bo Chen")
    page = await browser_page(await _member(database), java_script_enabled=False)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto("/?view=all")
    rows = page.locator(".inbox-row")
    assert await rows.count() == 2
    # the inline CSS applies under the CSP (a refused <style> would leave rows unstyled)
    assert await rows.first.evaluate("r => getComputedStyle(r).display") == "grid"
    await page.fill("#inbox-q", "refund")
    await page.press("#inbox-q", "Enter")
    await page.wait_for_url(re.compile(r"q=refund"))
    assert await rows.count() == 1 and "Bo Chen" in await rows.first.inner_text()
    assert errors == []


async def test_the_live_stream_is_not_compressed(web_server, database: Database) -> None:  # type: ignore[no-untyped-def]
    maya, omar = await _member(database, "Maya Tan"), await _member(database, "Omar Haddad")
    cid = (await receive(database, "live-gz", "cust-1")).conversation_id
    async with (
        httpx.AsyncClient(base_url=web_server.url, timeout=30) as as_maya,
        httpx.AsyncClient(base_url=web_server.url, timeout=30) as as_omar,
    ):
        _sign_in(as_maya, maya)
        omar_bare = _sign_in(as_omar, omar)
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "gzip"}
        async with as_maya.stream("GET", "/live", headers=headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers
            typed = await as_omar.post(
                f"/conversations/{cid}/typing", headers={"X-CSRF-Token": mask_csrf(omar_bare)}
            )
            assert typed.status_code == 204

            async def first_event() -> str:
                async for line in stream.aiter_lines():
                    if line.startswith("event:"):
                        return line.split(":", 1)[1].strip()
                return ""

            # A compressing middleware would hold the small event back: it arrives now.
            assert await asyncio.wait_for(first_event(), 15) == f"typing-{cid}"
