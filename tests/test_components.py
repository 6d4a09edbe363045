"""What the service is made of: importing ``service.components`` registers all of it.

Each check runs in a fresh process that imports ``service.components`` and nothing else,
so what this test run imported elsewhere cannot hide a module left out of it. The lists
below are the wiring as it should be: a change to it (a new listener, a new periodic task)
changes them too, on purpose.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.utils.processes import ROOT, child_env

# What every event enqueues, in order, with the agents' surfaces on (Telegram and Slack
# listen only when they are configured, checked once at start-up).
SUBSCRIBERS = {
    "message.received": [
        "message.translate",
        "routing.route",
        "telegram.team_mirror",
        "slack_agents.sync",
    ],
    "message.edited": ["message.translate", "slack_agents.refresh_line"],
    "message.sent": ["telegram.team_replied", "slack_agents.sync"],
    "message.translated": ["slack_agents.refresh_line"],
    "attachment.stored": ["attachment.transcribe"],
    "attachment.transcribed": ["slack_agents.refresh_line"],
    "conversation.status_changed": ["routing.status_changed", "slack_agents.refresh_card"],
    "conversation.assigned": ["telegram.team_assigned", "slack_agents.assigned"],
    "handoff.created": ["telegram.team_handoff", "slack_agents.handoff"],
    "handoff.escalated": ["telegram.team_escalated", "slack_agents.escalated"],
    "intervention.opened": ["telegram.team_intervention", "slack_agents.intervention"],
    "intervention.rule_failed": ["slack_agents.rule_failed"],
}
# Declared and published, with no listener in the service on purpose: they are in the
# audit trail of jobs for whoever subscribes next (and tests listen in on them).
NO_SUBSCRIBER = {"conversation.rerouted", "intervention.resolved"}
SURFACE_KINDS = ("telegram.", "slack_agents.")  # the listeners that need their surface on

PERIODIC_TASKS = {
    "crm_core.periodic.intervention_pass",
    "crm_core.periodic.nightly_scores",
    "inbox.periodic.wake_snoozed_conversations",
    "inbox.periodic.purge_finished_jobs",
    "inbox.periodic.purge_idempotency_records",
    "inbox.periodic.settle_early_status_callbacks",
    "routing.jobs.drain_routing_queue",
    "routing.jobs.reroute_unanswered_conversations",
    "handoff.shift_end",
    "handoff.escalate",
}
ADAPTERS = {"api", "email", "telegram", "slack", "twilio", "whatsapp_cloud"}
# A provider's adapter sends for its own name; twilio also for sms and whatsapp, which
# channels.whatsapp hands to twilio or whatsapp_cloud per reply.
SENDERS = ADAPTERS | {"sms", "whatsapp"}

SURFACES_ON = {
    "HELIOGRAPH_TELEGRAM_BOT_TOKEN": "123:components",
    "HELIOGRAPH_SLACK_BOT_TOKEN": "xoxb-components",
    "HELIOGRAPH_SLACK_SIGNING_SECRET": "components",
    "HELIOGRAPH_SLACK_AGENT_THREADS": "dm",
}
PACKAGES = (
    "heliograph",
    "crm_core",
    "transcription",
    "inbox",
    "routing",
    "handoff",
    "channels",
    "reporting",
    "surfaces",
    "web",
    "service",
)

PROBE = """
import importlib, json, pkgutil, sys

def snapshot():
    from channels.base import adapters
    from heliograph import jobs, scheduler
    from inbox.outbox import sender_channels
    from sqlmodel import SQLModel

    return {
        "events": sorted(jobs.declared_events()),
        "kinds": sorted(jobs.declared_kinds()),
        "handlers": sorted(jobs.registered_kinds()),
        "subscribers": {
            name: [kind.name for kind in jobs.subscribers(event)]
            for name, event in sorted(jobs.declared_events().items())
        },
        "tasks": sorted(task.name for task in scheduler.periodic_tasks()),
        "adapters": sorted(adapters()),
        "senders": sorted(sender_channels()),
        "tables": sorted(SQLModel.metadata.tables),
    }

import service.tables
tables = snapshot()["tables"]
import service.components
components = snapshot()
components["tables_alone"] = tables
from channels.registry import PACKAGES
components["channel_packages"] = sorted(package.name for package in PACKAGES)
broken = {}
for root in sys.argv[1:]:  # every module of the service, whether components names it or not
    package = importlib.import_module(root)
    for found in pkgutil.walk_packages(package.__path__, root + "."):
        try:
            importlib.import_module(found.name)
        except Exception as exc:
            broken[found.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"components": components, "everything": snapshot(), "broken": broken}))
"""


def probe(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *PACKAGES],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def surfaces_on() -> dict[str, Any]:
    return probe(SURFACES_ON)


@pytest.fixture(scope="module")
def surfaces_off() -> dict[str, Any]:
    return probe({})


def test_no_module_registers_anything_that_components_leaves_out(
    surfaces_on: dict[str, Any],
) -> None:
    assert surfaces_on["broken"] == {}  # every module of the service imports
    components, everything = surfaces_on["components"], surfaces_on["everything"]
    assert {k: components[k] for k in everything} == everything


def test_every_job_kind_has_a_handler(surfaces_on: dict[str, Any]) -> None:
    components = surfaces_on["components"]
    assert components["handlers"] == components["kinds"]


def test_every_event_has_its_subscribers_and_none_other(surfaces_on: dict[str, Any]) -> None:
    subscribers = surfaces_on["components"]["subscribers"]
    assert set(subscribers) == set(SUBSCRIBERS) | NO_SUBSCRIBER  # every declared event
    assert {e: k for e, k in subscribers.items() if k} == SUBSCRIBERS
    assert {e for e, k in subscribers.items() if not k} == NO_SUBSCRIBER


def test_the_surfaces_listen_only_when_they_are_on(surfaces_off: dict[str, Any]) -> None:
    expected = {
        event: [kind for kind in kinds if not kind.startswith(SURFACE_KINDS)]
        for event, kinds in SUBSCRIBERS.items()
    }
    subscribers = surfaces_off["components"]["subscribers"]
    assert {e: k for e, k in subscribers.items() if k} == {e: k for e, k in expected.items() if k}
    # Their handlers are there all the same: jobs queued while they were on still run.
    assert surfaces_off["components"]["handlers"] == surfaces_off["components"]["kinds"]


def test_every_channel_adapter_and_package_has_a_sender(surfaces_on: dict[str, Any]) -> None:
    components = surfaces_on["components"]
    assert set(components["adapters"]) == ADAPTERS
    assert set(components["senders"]) == SENDERS
    assert set(components["channel_packages"]) <= set(components["senders"])


def test_every_table_is_in_the_metadata_with_the_models_alone(
    surfaces_on: dict[str, Any],
) -> None:
    """``service.tables`` (what the CLI's quick commands and Alembic's comparison load)
    holds every table the whole service defines."""
    components, everything = surfaces_on["components"], surfaces_on["everything"]
    assert components["tables_alone"] == components["tables"] == everything["tables"]
    assert {"job", "customer", "conversation", "team_member", "handoff"} <= set(
        components["tables"]
    )


def test_the_scheduler_runs_the_listed_tasks(surfaces_on: dict[str, Any]) -> None:
    assert set(surfaces_on["components"]["tasks"]) == PERIODIC_TASKS
