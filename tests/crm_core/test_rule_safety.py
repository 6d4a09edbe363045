"""Settings cannot break the trigger pass: every rule parameter has a type and a range the
API enforces, and a rule that fails (a bad stored row, a query the database refuses) is
skipped alone, logged, counted in /metrics and reported to admins at most once an hour."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import interventions, triggers
from crm_core.bus import INTERVENTION_RULE_FAILED, RuleFailed
from crm_core.models import Intervention
from crm_core.rule_failures import failures_by_rule
from heliograph import jobs
from heliograph.db import Database
from heliograph.models import Job
from tests.utils.crm_world import (
    API,
    evaluate,
    store_bad_row,
    two_causes,
)
from tests.utils.db import count, rows
from tests.utils.factories import member_with_token
from tests.utils.jobs import listening

ALERT = jobs.JobKind("test.admin_alert", RuleFailed)
ALERT_KIND = ALERT.name


@pytest.fixture
def admin_alerts() -> Iterator[None]:
    with listening(INTERVENTION_RULE_FAILED, ALERT, alone=True):
        yield


def failures_in(metrics: str, rule: str) -> float:
    found = re.search(
        rf'^heliograph_intervention_rule_failures_total{{rule="{rule}"}} (\S+)$', metrics, re.M
    )
    assert found is not None, metrics
    return float(found.group(1))


async def test_a_parameter_out_of_range_is_refused_naming_it_and_its_range(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, lead = await member_with_token(database, "lead", "Leo Lead")
    (nudge,) = [
        r
        for r in (await client.get(f"{API}/intervention-rules", headers=lead)).json()
        if r["name"] == "inactivity_nudge"
    ]
    assert nudge["limits"] == {"days": [1, 365], "max_days": [1, 3650]}  # declared up front
    path = f"{API}/intervention-rules/inactivity_nudge"
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"params": {"days": 10**12}},
            "inactivity_nudge.days must be a whole number from 1 to 365 (got 1000000000000)",
        ),
        ({"params": {"days": 0}}, "inactivity_nudge.days must be a whole number from 1 to 365"),
        ({"params": {"days": 40}}, "max_days (30) must be at least days (40)"),
        ({"message": "Hi {first_name.__class__}"}, "it has {first_name.__class__}"),
        ({"message": "Hi {first_name"}, "unmatched braces"),
    ]
    for body, expected in cases:
        answer = await client.patch(path, json=body, headers=lead)
        assert answer.status_code == 422 and expected in answer.json()["error"], answer.text
    low = await client.patch(
        f"{API}/intervention-rules/low_engagement", json={"params": {"below": 101}}, headers=lead
    )
    assert "low_engagement.below must be a whole number from 0 to 100" in low.json()["error"]

    (nudge,) = [
        r
        for r in (await client.get(f"{API}/intervention-rules", headers=lead)).json()
        if r["name"] == "inactivity_nudge"
    ]
    assert (nudge["params"], nudge["problem"]) == ({"days": 7, "max_days": 30}, None)
    ok = await client.patch(path, json={"params": {"days": 365, "max_days": 3650}}, headers=lead)
    assert ok.status_code == 200 and ok.json()["params"] == {"days": 365, "max_days": 3650}


async def test_a_stored_bad_setting_skips_its_rule_alone_and_is_reported_once(
    client: httpx.AsyncClient,
    database: Database,
    admin_alerts: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await two_causes(database)
    await store_bad_row(database)
    before = failures_by_rule().get("inactivity_nudge", 0)

    with caplog.at_level(logging.ERROR, logger="crm_core.rule_failures"):
        first = await evaluate(database)
        second = await evaluate(database)
    assert first.by_rule == {"milestone_celebration": 1}  # the other rules ran
    assert (
        "inactivity_nudge.days must be a whole number from 1 to 365"
        in first.failed["inactivity_nudge"]
    )
    assert second.failed.keys() == {"inactivity_nudge"}
    assert [i.rule for i in await rows(database, Intervention)] == ["milestone_celebration"]
    logged = [r.getMessage() for r in caplog.records if "inactivity_nudge" in r.getMessage()]
    assert len(logged) == 2 and "failed and was skipped" in logged[0]

    (alert,) = await rows(database, Job, Job.kind == ALERT_KIND)  # two passes, one alert
    assert alert.payload["rule"] == "inactivity_nudge"
    assert "from 1 to 365 (got 1000000000000)" in alert.payload["reason"]
    assert failures_by_rule()["inactivity_nudge"] == before + 2
    metrics = (await client.get("/metrics")).text
    assert failures_in(metrics, "inactivity_nudge") == before + 2
    assert failures_in(metrics, "upsell") >= 0  # every rule has its line

    _, admin = await member_with_token(database, "admin", "Ada Admin")
    listed = {
        r["name"]: r for r in (await client.get(f"{API}/intervention-rules", headers=admin)).json()
    }
    assert "stored setting: inactivity_nudge.days" in listed["inactivity_nudge"]["problem"]
    path = f"{API}/intervention-rules/inactivity_nudge"
    still_bad = await client.patch(path, json={"enabled": True}, headers=admin)
    assert still_bad.status_code == 422 and "days" in still_bad.json()["error"]
    fixed = await client.patch(path, json={"params": {"days": 7}}, headers=admin)
    assert fixed.status_code == 200 and fixed.json()["problem"] is None
    assert (await evaluate(database)).by_rule == {"inactivity_nudge": 1}


async def test_a_rule_whose_query_fails_is_rolled_back_alone(
    database: Database, monkeypatch: pytest.MonkeyPatch, admin_alerts: None
) -> None:
    """A finder that wrote, then had its query refused by the database: its write is
    undone, and the rules after it (on PostgreSQL too, where an error aborts the
    transaction but for the savepoint) still run."""
    await two_causes(database)

    async def refused(session: AsyncSession, *_: Any) -> list[triggers.Candidate]:
        await session.execute(
            text("UPDATE customer SET display_name = 'scribbled' WHERE display_name IS NULL")
        )
        await session.execute(text("SELECT no_such_column FROM customer"))
        return []

    monkeypatch.setitem(interventions.FINDERS, "low_engagement", refused)
    result = await evaluate(database)
    assert result.by_rule == {"inactivity_nudge": 1, "milestone_celebration": 1}
    assert result.failed.keys() == {"low_engagement"} and "no_such_column" in str(result.failed)
    assert await count(database, Job, Job.kind == ALERT_KIND) == 1
    async with database.read_session() as session:
        names = (await session.execute(text("SELECT display_name FROM customer"))).scalars()
        assert "scribbled" not in list(names)
