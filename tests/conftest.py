"""Shared fixtures: a migrated database on SQLite (always) and PostgreSQL (when it runs).

``database`` is parametrised over both engines; tests that only make sense on one use
``sqlite_database`` or ``pg_database``. PostgreSQL is started if it is down; if it still
cannot be reached, its variants are skipped and the suite passes on SQLite alone.

The provider sandbox (``sandbox_service``, ``sandbox_url``, ``sandbox``) runs once per test
module, started with the module's ``SANDBOX_ENV``; ``receiver`` (the API channel's replies)
runs against it, ``team_bot`` (the team's Telegram chats) against the sandbox started with
``TELEGRAM_ENV`` (the same process where that is the module's env). Helpers that are not fixtures
are in ``tests/utils`` (``jobs.run_jobs``, ``db.rows``, ``http.post_<channel>``, ...);
tests import nothing from here or from each other (``tests/test_test_layout.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.api import close_client
from heliograph import db as db_module
from heliograph.db import Database
from heliograph.settings import get_settings, reset_settings
from service.components import load_components
from tests.utils import pg, schema
from tests.utils.processes import Service
from tests.utils.sandbox import Receiver, Sandboxes, base_url, reset
from tests.utils.signing import SECRET
from tests.utils.telegram_team import TeamBot, running_team_bot
from tests.utils.web import WEB_SESSION_SECRET

load_components()

pytest_plugins = ["tests.utils.browser"]  # web_server, browser, browser_page


DETECTOR_SOCKET = f"{tempfile.gettempdir()}/heliograph-tests-{os.getpid()}/language.sock"


def _configure(url: str, extra: dict[str, str] | None = None) -> None:
    for key in [k for k in os.environ if k.startswith("HELIOGRAPH_")]:
        del os.environ[key]
    os.environ.update(
        {
            "HELIOGRAPH_DATABASE_URL": url,
            "HELIOGRAPH_API_INBOUND_SECRET": SECRET,
            "HELIOGRAPH_WEB_SESSION_SECRET": WEB_SESSION_SECRET,
            "HELIOGRAPH_JOB_BACKOFF_BASE_S": "0.05",
            "HELIOGRAPH_JOB_BACKOFF_MAX_S": "0.5",
            # No network in tests: a test that translates points the provider at the
            # sandbox's LibreTranslate fake and turns this on.
            "HELIOGRAPH_TRANSLATION_ENABLED": "false",
            # The default shared language detector, one per test process (xdist worker),
            # gone a minute after the last detection.
            "HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET": DETECTOR_SOCKET,
            "HELIOGRAPH_LANGUAGE_DETECTOR_IDLE_EXIT_S": "60",
            **(extra or {}),
        }
    )
    reset_settings()
    db_module.use_db(None)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "heliograph.db"
    _configure(schema.sqlite_url(path))
    yield schema.migrated_sqlite(path)


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not pg.postgres_available():
        pytest.skip("PostgreSQL is not running and could not be started")
    name, url = pg.migrated_database()
    _configure(url)
    try:
        yield url
    finally:
        pg.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


async def _open(url: str) -> AsyncIterator[Database]:
    database = Database(get_settings())
    db_module.use_db(database)
    try:
        yield database
    finally:
        await database.dispose()
        db_module.use_db(None)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async for d in _open(database_url):
        yield d


@pytest.fixture
async def sqlite_database(sqlite_url: str) -> AsyncIterator[Database]:
    async for d in _open(sqlite_url):
        yield d


@pytest.fixture
async def pg_database(pg_url: str) -> AsyncIterator[Database]:
    async for d in _open(pg_url):
        yield d


@pytest.fixture
async def client(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (no background workers: tests drain jobs with ``run_jobs``)."""
    from service.app import create_app

    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


# --- the provider sandbox -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """The module's sandbox processes (one per environment), stopped when it ends."""
    running = Sandboxes(tmp_path_factory)
    try:
        yield running
    finally:
        running.stop()


def _module_setting(request: pytest.FixtureRequest, name: str, default: Any = None) -> Any:
    found = getattr(request.module, name, default)
    if found is None:
        pytest.fail(f"{request.module.__name__} uses the sandbox but sets no {name}")
    return found


@pytest.fixture(scope="module")
def sandbox_service(request: pytest.FixtureRequest, sandboxes: Sandboxes) -> Service:
    """The module's provider sandbox, its own process, started with the module's
    ``SANDBOX_ENV`` (the fakes' credentials; where they send what customers write)."""
    return sandboxes.service(_module_setting(request, "SANDBOX_ENV"))


@pytest.fixture(scope="module")
def sandbox_url(sandbox_service: Service) -> str:
    """The module's sandbox's base URL (``http://127.0.0.1:<port>``)."""
    return base_url(sandbox_service)


@pytest.fixture
async def sandbox(
    request: pytest.FixtureRequest, sandbox_service: Service
) -> AsyncIterator[httpx.AsyncClient]:
    """The module's sandbox's control API, as a client. Before and after the test its
    recorded calls are forgotten and the module's ``SANDBOX_RESETS`` paths deleted (a
    fake's state, a failure mode); afterwards the sandbox must still be running."""
    paths: tuple[str, ...] = _module_setting(request, "SANDBOX_RESETS", ())
    async with httpx.AsyncClient(base_url=base_url(sandbox_service), timeout=30) as http:
        await reset(http, paths)
        yield http
        await reset(http, paths)
    assert sandbox_service.proc.poll() is None, sandbox_service.log()


@pytest.fixture
async def team_bot(
    client: httpx.AsyncClient,
    database: Database,
    sandboxes: Sandboxes,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[TeamBot]:
    """The team's Telegram chats: the app in-process, the sandbox's fake Bot API as
    Telegram (``tests.utils.telegram_team``)."""
    async for bot in running_team_bot(client, database, sandboxes, monkeypatch, tmp_path):
        yield bot


@pytest.fixture
async def receiver(
    database: Database, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Receiver]:
    """The API channel's replies go to the sandbox's receiver (``SANDBOX_ENV = API_ENV``)."""
    monkeypatch.setenv("HELIOGRAPH_API_OUTBOUND_URL", f"{sandbox_url}/api-receiver/replies")
    reset_settings()
    r = Receiver(sandbox_url)
    await r.http.delete("/_sandbox/calls")
    await r.recover()
    yield r
    await r.recover()
    await r.http.aclose()
    await close_client()  # its connections belong to this test's event loop
