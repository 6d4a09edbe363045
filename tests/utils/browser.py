"""The web app in a real browser: ``heliograph serve`` on a test database, and Debian's
Chromium driven by Playwright (never a downloaded browser).

    async def test_x(web_server, browser_page):
        page = await browser_page(member_id)        # signed in as that member
        await page.goto(f"{web_server.url}/")

``web_server`` serves the database of the test's ``database`` fixture (seed it through the
service functions before opening pages; the server reads the same file or PostgreSQL
database). ``browser_page(member_id, width=1280)`` opens a page whose context carries that
member's session cookie (``tests.utils.web.session_cookie``), ``width=375`` for a phone.

``web_server_with(env)`` starts another server with its workers on and ``env`` added (the
sandbox's providers and translation); ``open_page(browser, url)`` opens a signed-out page on it.

``await page.add_init_script(LIVE_FLAG)`` before a page loads, then ``await wait_live(page)``
waits until that page listens to the server's live events (htmx's SSE connection is open).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.utils.processes import Service, eventually, free_port, start_heliograph
from tests.utils.web import WEB_SESSION_SECRET, session_cookie
from web.ui.sessions import COOKIE

CHROMIUM = "/usr/bin/chromium"

# The page keeps a flag once htmx's SSE connection to /live is open (a new page, a new flag).
LIVE_FLAG = "document.addEventListener('htmx:sseOpen', () => { window.__hgLive = true; });"


async def wait_live(page: Any, seconds: float = 15) -> None:
    """Wait until ``page`` (carrying ``LIVE_FLAG``) listens to the server's live events.
    Polled from here: the page's CSP forbids the eval that ``page.wait_for_function`` needs."""

    async def listening() -> bool:
        return bool(await page.evaluate("window.__hgLive === true"))

    await eventually("the page's live connection", listening, seconds)


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


@pytest.fixture
def web_server_with(
    database: Any, tmp_path: Path
) -> Iterator[Callable[[Mapping[str, str]], Service]]:
    """``start(env)``: ``heliograph serve`` on the test's database WITH its workers (the outbox
    delivers, translations run), ``env`` added (a provider's credentials, its fake's URL), and
    HELIOGRAPH_PUBLIC_URL its own address unless ``env`` says otherwise. Stopped at the end."""
    started: list[Service] = []

    def start(extra: Mapping[str, str]) -> Service:
        port = free_port()
        env = {
            "HELIOGRAPH_DATABASE_URL": os.environ["HELIOGRAPH_DATABASE_URL"],
            "HELIOGRAPH_WEB_SESSION_SECRET": WEB_SESSION_SECRET,
            "HELIOGRAPH_RUN_WORKERS": "true",
            "HELIOGRAPH_RUN_SCHEDULER": "false",
            "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",
            "HELIOGRAPH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "HELIOGRAPH_MEDIA_DIR": str(tmp_path / "media"),
            **extra,
        }
        log = tmp_path / f"serve-{len(started)}.log"
        started.append(start_heliograph(["serve"], env, log, port=port))
        return started[-1]

    try:
        yield start
    finally:
        for service in started:
            service.stop()


async def open_page(
    browser: Any, base_url: str, width: int = 1280, height: int = 900, **options: Any
) -> Any:
    """A page in a fresh context (signed out) on ``base_url``; closed with the browser."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, base_url=base_url, **options
    )
    return await context.new_page()


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


async def member_page(
    browser: Any, url: str, member_id: int, width: int = 1280, height: int = 900
) -> Any:
    """A page on the server at ``url`` in a browser context of its own, signed in as the
    member (a second person at another desk; close it with ``page.context.close()``)."""
    context = await browser.new_context(viewport={"width": width, "height": height}, base_url=url)
    cookie = session_cookie(member_id, secrets.token_urlsafe(16))
    await context.add_cookies([{"name": COOKIE, "value": cookie, "url": url}])
    return await context.new_page()


@pytest.fixture
def two_web_servers(database: Any, tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    """Two ``heliograph serve`` processes (no workers) on the test's PostgreSQL database,
    as behind a load balancer. Skipped on SQLite: one SQLite file is one process's."""
    url = os.environ["HELIOGRAPH_DATABASE_URL"]
    if not url.startswith("postgresql"):
        pytest.skip("two server processes share a database only on PostgreSQL")
    env = {
        "HELIOGRAPH_DATABASE_URL": url,
        "HELIOGRAPH_WEB_SESSION_SECRET": WEB_SESSION_SECRET,
        "HELIOGRAPH_RUN_WORKERS": "false",
        "HELIOGRAPH_RUN_SCHEDULER": "false",
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",
    }
    started: list[Service] = []
    try:
        for name in ("a", "b"):
            log = tmp_path / f"serve-{name}.log"
            started.append(start_heliograph(["serve"], env, log, port=free_port()))
        yield started[0], started[1]
    finally:
        for service in started:
            service.stop()
