"""An intervention rule that fails is reported to the admins in Slack, once an hour."""

from __future__ import annotations

import httpx
import pytest

from heliograph.db import Database
from tests.utils.crm_world import evaluate, store_bad_row, two_causes
from tests.utils.jobs import run_jobs
from tests.utils.routing_world import add_member
from tests.utils.slack_agents import ADA, SLACK_AGENTS_ENV, in_channel

pytestmark = pytest.mark.slow

SANDBOX_ENV = SLACK_AGENTS_ENV  # fake Slack (the fixtures: tests/surfaces/conftest.py)


async def test_admins_read_which_rule_failed_and_why_in_slack_once(
    database: Database,
    slack_agents: httpx.AsyncClient,
) -> None:
    async with database.session() as session:
        await add_member(session, "Ada Lovelace", role="admin", slack_user_id=ADA)
        await add_member(session, "Ben Agent", role="agent", slack_user_id="U0BEN00001")
        await session.commit()
    await two_causes(database)
    await store_bad_row(database)
    await evaluate(database)
    await evaluate(database)  # a second pass within the hour: no second alert
    await run_jobs(database)

    (alert,) = [m["text"] for m in await in_channel(slack_agents, "D" + ADA[1:])]
    assert alert.startswith(
        ":warning: *Intervention rule “Gentle nudge after a week without course activity” "
        "(`inactivity_nudge`) failed and was skipped*; the other rules ran."
    )
    assert "inactivity_nudge.days must be a whole number from 1 to 365" in alert
    assert "PATCH /api/v1/intervention-rules/inactivity_nudge" in alert
    assert await in_channel(slack_agents, "D0BEN00001") == []  # admins only
