"""Logs a machine can read (heliograph/logs.py): JSON lines, a request's id carried into
the jobs it caused (and the jobs those caused), and the per-request lines of libraries
off by default."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from heliograph import jobs, logs
from heliograph.db import Database, get_db
from heliograph.models import Job
from inbox.bus import MESSAGE_RECEIVED, MessageRef
from tests.utils.jobs import listening, run_jobs
from tests.utils.signing import inbound_body, signed_headers

ROOT = Path(__file__).resolve().parents[2]
# A listener of message.received that logs, then queues FOLLOW_UP.
SEEN = jobs.JobKind("test.logs.seen", MessageRef)
FOLLOW_UP = jobs.JobKind("test.logs.follow_up", MessageRef)
log = logging.getLogger("tests.logs")


@jobs.handler(SEEN)
async def _seen(payload: MessageRef) -> None:
    log.info("message %s seen", payload.message_id)
    async with get_db().session() as session:
        await jobs.enqueue(session, FOLLOW_UP, MessageRef(message_id=payload.message_id))
        await session.commit()


@jobs.handler(FOLLOW_UP)
async def _follow_up(payload: MessageRef) -> None:
    log.warning("follow-up for message %s", payload.message_id)


@pytest.fixture
def listener() -> Iterator[None]:
    with listening(MESSAGE_RECEIVED, SEEN):
        yield


async def test_a_requests_id_is_in_the_json_lines_of_the_jobs_it_caused(
    client: httpx.AsyncClient,
    database: Database,
    listener: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tests.logs")
    body = inbound_body("m-logs-1", text="where is my parcel?")
    headers = {**signed_headers(body), "X-Request-ID": "req-7f3a9c"}
    answer = await client.post("/api/v1/inbound", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == "req-7f3a9c"

    await run_jobs(database)
    async with database.read_session() as session:
        rows = (await session.execute(select(Job.kind, Job.request_id))).all()
    assert (SEEN.name, "req-7f3a9c") in rows and (FOLLOW_UP.name, "req-7f3a9c") in rows
    lines = [
        json.loads(logs.json_formatter().format(r))
        for r in caplog.records
        if r.name == "tests.logs"
    ]
    assert [(line["job_kind"], line["request_id"]) for line in lines] == [
        (SEEN.name, "req-7f3a9c"),
        (FOLLOW_UP.name, "req-7f3a9c"),
    ]
    assert lines[1]["level"] == "WARNING" and lines[1]["message"].startswith("follow-up for")
    assert lines[1]["logger"] == "tests.logs" and "timestamp" in lines[1]


async def test_an_unusable_request_id_is_replaced_by_a_fresh_one(
    client: httpx.AsyncClient,
) -> None:
    odd_id = "two words, é".encode() + b"x" * 80
    odd = await client.get("/healthz", headers={"X-Request-ID": odd_id})
    fresh = odd.headers["x-request-id"]
    assert len(fresh) == 32 and int(fresh, 16) >= 0
    other = (await client.get("/healthz")).headers["x-request-id"]
    assert len(other) == 32 and other != fresh


# A process as `heliograph serve` sets it up: one real HTTP request through httpx (to a
# stdlib server), one APScheduler job, one line of our own inside a request's scope.
SCRIPT = """
import http.server, threading, time
import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from heliograph import logs
import logging

logs.setup_logging()
server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
server.RequestHandlerClass.log_message = lambda *a: None
threading.Thread(target=server.serve_forever, daemon=True).start()
httpx.get(f"http://127.0.0.1:{server.server_port}/")
scheduler = BackgroundScheduler()
ran = threading.Event()
scheduler.add_job(ran.set)
scheduler.start()
ran.wait(10)
time.sleep(0.2)
scheduler.shutdown()
with logs.request_scope("req-42"):
    logging.getLogger("heliograph.web").info("conversation %s assigned", 7)
server.shutdown()
"""


def run_service_like(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HELIOGRAPH_")}
    environ |= {f"HELIOGRAPH_{k.upper()}": v for k, v in env.items()}
    environ["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return done.stderr.splitlines()


def test_json_lines_by_default_without_the_libraries_per_request_lines() -> None:
    lines = [json.loads(line) for line in run_service_like()]  # every line is JSON
    ours = [line for line in lines if line["logger"] == "heliograph.web"]
    assert ours == [
        {
            "level": "INFO",
            "logger": "heliograph.web",
            "message": "conversation 7 assigned",
            "request_id": "req-42",
            "timestamp": ours[0]["timestamp"],
        }
    ]
    said = " ".join(line["message"] for line in lines)
    assert "HTTP Request" not in said and "Running job" not in said


def test_the_libraries_per_request_lines_can_be_turned_back_on_and_text_chosen() -> None:
    lines = run_service_like(log_library_requests="true", log_format="text")
    said = "\n".join(lines)
    assert "INFO httpx: HTTP Request: GET http://127.0.0.1:" in said
    assert 'Running job "Event.set' in said and "executed successfully" in said
    assert any(
        line.endswith("INFO heliograph.web: conversation 7 assigned [request=req-42]")
        for line in lines
    )
