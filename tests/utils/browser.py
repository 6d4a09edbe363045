"""The web app in a real browser: ``heliograph serve`` on a test database, and Debian's
Chromium driven by Playwright (never a downloaded browser).

    async def test_x(web_server, browser_page):
        page = await browser_page(member_id)        # signed in as that member
        await page.goto(f"{web_server.url}/")

``web_server`` serves the database of the test's ``database`` fixture (seed it through the
service functions before opening pages; the server reads the same file or PostgreSQL
database). ``browser_page(member_id, width=1280)`` opens a page whose context carries that
member's session cookie (``tests.utils.web.session_cookie``), ``width=375`` for a phone.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.utils.processes import Service, free_port, start_heliograph
from tests.utils.web import WEB_SESSION_SECRET, session_cookie
from web.ui.sessions import COOKIE

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def web_server(database: Any, tmp_path: Path) -> Iterator[Service]:
    """``heliograph serve`` (no workers: a test drains jobs itself) on the test's database."""
    env = {
        "HELIOGRAPH_DATABASE_URL": os.environ["HELIOGRAPH_DATABASE_URL"],
        "HELIOGRAPH_WEB_SESSION_SECRET": WEB_SESSION_SECRET,
        "HELIOGRAPH_RUN_WORKERS": "false",
        "HELIOGRAPH_RUN_SCHEDULER": "false",
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",
    }
    service = start_heliograph(["serve"], env, tmp_path / "serve.log", port=free_port())
    try:
        yield service
    finally:
        service.stop()


def _chromium_missing() -> bool:
    return not Path(CHROMIUM).exists()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if _chromium_missing():
        pytest.skip("Chromium is not installed (make install-test installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
async def browser_page(
    browser: Any, web_server: Service
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    contexts: list[Any] = []

    async def open_page(
        member_id: int | None, width: int = 1280, height: int = 900, **options: Any
    ) -> Any:
        context = await browser.new_context(
            viewport={"width": width, "height": height}, base_url=web_server.url, **options
        )
        if member_id is not None:
            cookie = session_cookie(member_id, secrets.token_urlsafe(16))
            await context.add_cookies([{"name": COOKIE, "value": cookie, "url": web_server.url}])
        contexts.append(context)
        return await context.new_page()

    yield open_page
    for context in contexts:
        await context.close()
