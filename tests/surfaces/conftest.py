"""Fixtures of the surfaces' tests: agents in Slack (``fake``, ``slack_agents``).

A module that uses them sets ``SANDBOX_ENV = SLACK_AGENTS_ENV``
(``tests.utils.slack_agents``): the sandbox with fake Slack and fake Telegram.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from heliograph import jobs
from heliograph.db import Database
from surfaces import slack_alerts, slack_threads
from tests.utils.slack_agents import ADA, configure


@pytest.fixture
async def fake(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The fake Slack (and Telegram) of the module's sandbox, reset, Ada a Slack user."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as http:
        await http.delete("/_sandbox/calls")
        await http.delete("/_sandbox/slack")
        await http.delete("/_sandbox/fail", params={"provider": "slack"})
        await http.delete("/_sandbox/telegram")
        await http.post("/_sandbox/slack/users", json={"id": ADA, "real_name": "Ada Lovelace"})
        yield http


@pytest.fixture
def slack_agents(
    fake: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[httpx.AsyncClient]:
    configure(monkeypatch, str(fake.base_url))
    # As at the start of a process with agent threads on; the subscriptions end with the test.
    pairs = [*slack_threads.LISTENERS, *slack_alerts.LISTENERS]
    added = [(event, kind) for event, kind in pairs if kind not in jobs.subscribers(event)]
    slack_threads.listen()
    slack_alerts.listen()
    yield fake
    for event, kind in added:
        jobs.unsubscribe(event, kind)
