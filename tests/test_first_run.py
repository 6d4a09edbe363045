"""A first run messages nobody who did not just write.

The real CLI, in processes of its own: ``heliograph migrate`` and ``seed-demo`` on a fresh
SQLite file, then ``heliograph serve`` (web, workers, scheduler) with the API channel
pointed at an external receiver. A trigger pass over the demo's few hundred histories, and
the workers draining everything the seed left, send the receiver nothing. Once an admin
turns the milestone rule to "send", customers who reach a milestone get the message.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.utils.processes import (
    Service,
    free_port,
    heliograph_cli,
    start_heliograph,
    start_python,
)

pytestmark = pytest.mark.slow

SECRET = "first-run-api-secret-7d41c0"
ADMIN = "helena@heliograph.example"  # the demo team's admin (service/demo_data/team.yaml)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, Service]]:
    receiver_port = free_port()
    env = {
        "HELIOGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'first.db'}",
        "HELIOGRAPH_API_INBOUND_SECRET": SECRET,
        "HELIOGRAPH_API_OUTBOUND_URL": f"http://127.0.0.1:{receiver_port}/replies",
        "HELIOGRAPH_MEDIA_DIR": str(tmp_path / "media"),
    }
    receiver = start_python(
        "tests.utils.receiver",
        ["--port", str(receiver_port)],
        env,
        tmp_path / "receiver.log",
        f"http://127.0.0.1:{receiver_port}/health",
    )
    try:
        yield env, tmp_path / "first.db", receiver
    finally:
        receiver.stop()


def calls(receiver: Service) -> list[dict[str, Any]]:
    return list(httpx.get(f"{receiver.url}/calls", timeout=5).json())


def wait_for(check: Any, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)


def test_a_fresh_demo_install_sends_nothing_until_a_rule_is_turned_to_send(
    world: tuple[dict[str, str], Path, Service], tmp_path: Path
) -> None:
    env, db, receiver = world
    heliograph_cli(env, "migrate")
    summary = heliograph_cli(env, "seed-demo", "--customers", "80")
    assert "none queued" in summary
    queued = query(
        db,
        "SELECT kind, count(*) FROM job WHERE status = 'pending' "
        "AND kind IN ('outbox.deliver', 'intervention.send') GROUP BY kind",
    )
    assert queued == []  # seed-demo leaves nothing on its way to a provider
    answered = query(db, "SELECT count(*) FROM message WHERE direction = 'out'")[0][0]
    assert answered > 20  # the demo has its replies, as history
    token = heliograph_cli(env, "create-token", ADMIN).strip().split()[-1]
    auth = {"Authorization": f"Bearer {token}"}

    port = free_port()
    service = start_heliograph(["serve"], env, tmp_path / "serve.log", port=port)
    try:
        with httpx.Client(base_url=service.url, headers=auth, timeout=30) as http:
            rules = http.get("/api/v1/intervention-rules").json()
            assert {r["name"]: r["auto_send"] for r in rules} == dict.fromkeys(
                [r["name"] for r in rules], False
            )
            passed = http.post("/api/v1/interventions/evaluate")
            assert passed.status_code == 200
            opened = query(db, "SELECT count(*) FROM intervention")[0][0]
            assert opened > 5  # the demo's histories do trip the rules: as suggestions
            time.sleep(4)  # the workers drain whatever is due
            early = calls(receiver)
            assert early == [], [c["text"] for c in early[:3]]
            assert query(db, "SELECT count(*) FROM job WHERE kind = 'intervention.send'") == [(0,)]

            # An admin turns the milestone celebration to "send"; two customers reach one.
            people = query(
                db,
                "SELECT customer_id, external_id FROM identity "
                "WHERE external_id LIKE 'demo-%' ORDER BY customer_id LIMIT 2",
            )
            for customer_id, _ in people:
                quiet = {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}  # none
                changed = http.patch(f"/api/v1/customers/{customer_id}/profile", json=quiet)
                assert changed.status_code == 200, changed.text
            turned = http.patch(
                "/api/v1/intervention-rules/milestone_celebration", json={"auto_send": True}
            )
            assert turned.status_code == 200 and turned.json()["auto_send"] is True
            batch = [
                {
                    "type": "milestone_reported",
                    "idempotency_key": f"first-run-{customer_id}",
                    "customer": {"id": customer_id},
                    "milestone": "a hundred days of practice",
                }
                for customer_id, _ in people
            ]
            sent = http.post("/api/v1/events", json={"events": batch})
            assert sent.status_code == 200, sent.text
            wait_for(lambda: len(calls(receiver)) >= 2, within_s=20)
            time.sleep(1)  # anything else would arrive by now
    finally:
        service.stop()
    got = calls(receiver)
    assert sorted(c["recipient"] for c in got) == sorted(ext for _, ext in people), got
    assert all("Congratulations on reaching a hundred days of practice" in c["text"] for c in got)
