"""Shared fixtures: a migrated database on SQLite (always) and PostgreSQL (when it runs).

``database`` is parametrised over both engines; tests that only make sense on one use
``sqlite_database`` or ``pg_database``. PostgreSQL is started if it is down; if it still
cannot be reached, its variants are skipped and the suite passes on SQLite alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from heliograph import db as db_module
from heliograph import jobs
from heliograph.db import Database
from heliograph.migrate import upgrade
from heliograph.settings import get_settings, reset_settings
from service.components import load_components
from tests.utils import pg
from tests.utils.signing import SECRET

load_components()


def _configure(url: str, extra: dict[str, str] | None = None) -> None:
    for key in [k for k in os.environ if k.startswith("HELIOGRAPH_")]:
        del os.environ[key]
    os.environ.update(
        {
            "HELIOGRAPH_DATABASE_URL": url,
            "HELIOGRAPH_API_INBOUND_SECRET": SECRET,
            "HELIOGRAPH_JOB_BACKOFF_BASE_S": "0.05",
            "HELIOGRAPH_JOB_BACKOFF_MAX_S": "0.5",
            # No network in tests: a test that translates points the provider at the
            # sandbox's LibreTranslate fake and turns this on.
            "HELIOGRAPH_TRANSLATION_ENABLED": "false",
            **(extra or {}),
        }
    )
    reset_settings()
    db_module._db = None


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'heliograph.db'}"
    _configure(url)
    upgrade(url)
    yield url


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
    db_module._db = database
    try:
        yield database
    finally:
        await database.dispose()
        db_module._db = None


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


async def run_jobs(database: Database, rounds: int = 50) -> dict[str, int]:
    """Run every due job in this process until the queue is quiet; count the outcomes."""
    queue = jobs.JobQueue(database, get_settings(), "test-worker")
    outcomes: dict[str, int] = {}
    for _ in range(rounds):
        claimed = await queue.claim(100)
        if not claimed:
            break
        for job in claimed:
            outcome = await queue.run_one(job)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
