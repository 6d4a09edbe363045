"""The ``heliograph`` command as an operator runs it, against a SQLite file."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest

from heliograph import jobs
from heliograph.db import Database
from heliograph.settings import get_settings
from service.cli import main
from tests.utils.jobs import run_jobs
from tests.utils.processes import BIN, ROOT, child_env
from tests.utils.team_yaml import TEAM


def start(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "heliograph"), *args],
        cwd=ROOT,
        env=child_env({"HELIOGRAPH_DATABASE_URL": url}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


async def test_import_team_and_create_token_as_separate_processes(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    from routing.team import import_team
    from service.app import create_app

    async with sqlite_database.session() as session:  # Tom was imported before
        await import_team(session, "members: [{name: Tom, email: tom@team.example}]")
        await session.commit()
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    # Starting a process costs seconds, so the three run side by side.
    importing = start(sqlite_url, "import-team", str(team))
    minting = start(sqlite_url, "create-token", "tom@team.example", "--label", "ops")
    unknown = start(sqlite_url, "create-token", "nobody@team.example")

    assert finish(importing) == (
        0,
        "team imported: 1 created, 1 updated, 0 deactivated (not in the file)\n",
        "",
    )
    code, out, err = finish(minting)
    assert code == 0 and err == ""
    token = out.strip()
    assert token.startswith("hg_") and out.count("\n") == 1
    code, out, err = finish(unknown)
    assert (code, out) == (2, "")
    assert err == "error: no team member with email nobody@team.example\n"

    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        me = await client.get(
            "/api/v1/team-members/me", headers={"Authorization": f"Bearer {token}"}
        )
        members = await client.get(
            "/api/v1/team-members", headers={"Authorization": f"Bearer {token}"}
        )
    assert me.status_code == 200 and me.json()["email"] == "tom@team.example"
    assert {m["email"] for m in members.json()} == {"aisyah@team.example", "tom@team.example"}


# The rest runs the same entry point in this process: starting a process costs seconds.


def test_import_team_updates_and_names_errors(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "team.yaml", tmp_path / "bad.yaml"
    good.write_text(TEAM)
    bad.write_text(TEAM.replace("Europe/London", "Europe/Londn"))
    assert main(["import-team", str(good)]) == 0
    assert main(["import-team", str(good)]) == 0
    assert capsys.readouterr().out == (
        "team imported: 2 created, 0 updated, 0 deactivated (not in the file)\n"
        "team imported: 0 created, 2 updated, 0 deactivated (not in the file)\n"
    )

    assert main(["import-team", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: member #2 (tom@team.example): timezone:")
    assert "'Europe/Londn'" in captured.err

    assert main(["import-team", str(tmp_path / "missing.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "missing.yaml" in captured.err


class Order(jobs.Payload):
    order: int


NO_HANDLER = jobs.JobKind("no.such.kind", Order)  # declared, never handled


def test_jobs_dead_lists_and_retry_requeues(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def two_dead_jobs() -> None:
        database = Database(get_settings())
        async with database.session() as session:
            await jobs.enqueue(session, NO_HANDLER, Order(order=17))
            await jobs.enqueue(session, NO_HANDLER, Order(order=18))
            await session.commit()
        assert await run_jobs(database) == {"dead": 2}
        await database.dispose()

    asyncio.run(two_dead_jobs())
    assert main(["jobs", "dead"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{job_id}\tno.such.kind\t1 tries\t{{'order': {order}}}\t"
        f"no handler registered for job kind 'no.such.kind'"
        for job_id, order in ((2, 18), (1, 17))
    ]
    assert main(["jobs", "retry", "1"]) == 0
    assert main(["jobs", "retry", "1"]) == 1
    assert main(["jobs", "retry", "99"]) == 1
    assert capsys.readouterr().out == ("queued again\njob 1 is not dead\njob 99 is not dead\n")
    assert main(["jobs", "dead"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["2"]
