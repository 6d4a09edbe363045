"""The web app's shell: sign-in redirects, HTML errors for pages and JSON for the API, the
security headers of a page, the vendored htmx, and a real browser on a phone's width."""

from __future__ import annotations

import httpx

from heliograph.db import Database
from tests.utils.factories import make_member
from tests.utils.web import signed_in


async def _member(database: Database, role: str = "agent") -> int:
    async with database.session() as session:
        member = await make_member(session, "Maya Tan", role, timezone="Asia/Kuala_Lumpur")
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


async def test_a_page_needs_sign_in_and_the_api_stays_json(client: httpx.AsyncClient) -> None:
    page = await client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in?next=/"
    fragment = await client.get("/", headers={"Accept": "text/html", "HX-Request": "true"})
    assert fragment.headers["HX-Redirect"] == "/sign-in?next=/"
    api = await client.get("/api/v1/conversations/999", headers={"Accept": "text/html"})
    assert api.status_code == 401 and api.json()["error"]


async def test_a_signed_in_page_has_its_headers(
    client: httpx.AsyncClient, database: Database
) -> None:
    signed_in(client, await _member(database))
    page = await client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Maya Tan" in page.text and 'lang="en"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    missing = await client.get("/no-such-page", headers={"Accept": "text/html"})
    assert missing.status_code == 404 and "<html" in missing.text
    htmx = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:2000]


async def test_an_unknown_or_deactivated_member_is_signed_out(client: httpx.AsyncClient) -> None:
    signed_in(client, 424242)
    page = await client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 303


async def test_the_shell_in_chromium_on_a_phone(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    page = await browser_page(await _member(database), width=375)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto("/")
    assert await page.locator("h1").inner_text() == "Inbox"
    assert await page.evaluate("typeof htmx") == "object"  # loaded under the CSP
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    # The search is on the first screen; the other filters fold into "Filters" until opened.
    assert await page.locator("#inbox-q").is_visible()
    channel = page.locator("input[name=channel]")
    assert not await channel.is_visible()
    await page.locator(".inbox-more summary").click()
    assert await channel.is_visible()
    assert errors == []
