"""Job claims behind a backlog (issue #17): what one claim costs as the due jobs pile up.

A worker claims before every batch it runs, so a claim that costs more as the backlog
grows slows the very drain that would shrink it. For each backlog size, in a freshly
migrated SQLite file holding ``--done`` finished jobs (the history a running system keeps
until ``purge_done``) and ``backlog`` due ones (two kinds, a routing batch kind at URGENT
and a translation batch kind at NORMAL), the process claims and completes ``--claims``
times in a row (``JobQueue.claim`` then ``complete_many``, one writer transaction each)
and reports the CPU time per claim+complete and per job claimed (the writer thread's
included: the process's CPU time). With ``--code`` the same runs on another checkout
(``git worktree add --detach /tmp/before <commit>``), each in its own process, so both
codes are measured in one run on one machine.

Reported beside it, for this checkout: what building a statement costs against running
one already built (the reason the claim's statements are built once).

    .venv/bin/python bench/claims.py                              # this checkout
    .venv/bin/python bench/claims.py --code /tmp/before           # before and after
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import harness as h
import ingest

# Runs inside the target checkout's interpreter path: prints one JSON line.
PROBE = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from datetime import UTC, datetime
    from sqlalchemy import insert
    import service.components  # noqa: F401  (registers the job kinds)
    from heliograph import jobs
    from heliograph.db import Database, use_db
    from heliograph.models import Job
    from heliograph.settings import get_settings

    done, backlog, claims = (int(a) for a in sys.argv[1:4])

    async def main():
        db = Database(get_settings())
        use_db(db)
        now = datetime.now(UTC)
        rows = [
            dict(
                kind="routing.route" if i % 2 else "message.translate",
                priority=0 if i % 2 else 1,
                payload={"message_id": i, "conversation_id": i},
                run_at=now,
                status="done" if i < done else "pending",
                attempts=0,
                max_attempts=5,
            )
            for i in range(done + backlog)
        ]
        await db.run_transaction(lambda conn: conn.execute(insert(Job), rows))
        queue = jobs.JobQueue(db, get_settings(), "bench")
        await queue.complete_many(await queue.claim(1))  # warm: statements compiled
        cpu, wall, claimed = time.process_time(), time.perf_counter(), 0
        for _ in range(claims):
            got = await queue.claim(1)
            claimed += len(got)
            await queue.complete_many(got)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(json.dumps({
            "backlog": backlog, "claims": claims, "jobs_claimed": claimed,
            "cpu_ms_per_claim": round(1000 * cpu / claims, 3),
            "wall_ms_per_claim": round(1000 * wall / claims, 3),
            "cpu_us_per_job": round(1e6 * cpu / max(claimed, 1), 1),
        }))

    asyncio.run(main())
    """
)

STATEMENTS = textwrap.dedent(
    """
    import json, time
    from datetime import UTC, datetime
    from sqlalchemy import bindparam, create_engine, select
    from heliograph.models import Job

    engine = create_engine("sqlite://")
    Job.metadata.create_all(engine, tables=[Job.__table__])
    now = datetime.now(UTC)

    def built_each_time():
        return (
            select(Job.id, Job.kind, Job.priority, Job.run_at)
            .where(Job.status == "pending", Job.priority == 0, Job.run_at <= now)
            .order_by(Job.run_at, Job.id)
            .limit(1)
        )

    built_once = (
        select(Job.id, Job.kind, Job.priority, Job.run_at)
        .where(Job.status == "pending", Job.priority == bindparam("p"))
        .where(Job.run_at <= bindparam("t"))
        .order_by(Job.run_at, Job.id)
        .limit(1)
    )

    def us(fn, n=3000):
        fn()
        start = time.process_time()
        for _ in range(n):
            fn()
        return round(1e6 * (time.process_time() - start) / n, 1)

    with engine.connect() as conn:
        print(json.dumps({
            "build_only_us": us(built_each_time),
            "build_and_run_us": us(lambda: conn.execute(built_each_time()).first()),
            "run_built_once_us": us(lambda: conn.execute(built_once, {"p": 0, "t": now}).first()),
            "driver_only_us": us(lambda: conn.exec_driver_sql(
                "SELECT id FROM job WHERE status = 'pending' AND priority = 0 LIMIT 1").first()),
        }))
    """
)


def probe(root: Path, script: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=root,
        env=h.child_env(env, root),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed in {root}:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(root: Path, backlog: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HELIOGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/claims.db"}
        h.run_checked([*ingest.cli(root), "migrate"], env, "migrate", root=root)
        return probe(root, PROBE, [str(args.done), str(backlog), str(args.claims)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backlogs", default="1000,10000,30000", help="due jobs, comma-separated")
    parser.add_argument("--done", type=int, default=100_000, help="finished jobs kept")
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--code", type=Path, help="another checkout, measured too")
    parser.add_argument("--json", type=Path, default=h.RESULTS / "claims.json")
    args = parser.parse_args()
    backlogs = [int(b) for b in args.backlogs.split(",")]
    targets = {"heliograph": h.ROOT}
    if args.code:
        targets["before"] = args.code.resolve()
    out: dict[str, Any] = {
        "benchmark": "claims",
        "issue": 17,
        "machine": h.machine_info(),
        "config": {"done": args.done, "claims": args.claims, "backlogs": backlogs},
        "targets": {name: str(root) for name, root in targets.items()},
        "runs": {},
    }
    rows = []
    for backlog in backlogs:
        for name, root in targets.items():
            result = measure(root, backlog, args)
            out["runs"].setdefault(name, []).append(result)
            rows.append(
                [
                    name,
                    backlog,
                    result["jobs_claimed"] / result["claims"],
                    result["cpu_ms_per_claim"],
                    result["wall_ms_per_claim"],
                    result["cpu_us_per_job"],
                ]
            )
            print(f"  {name} behind {backlog:,} due jobs: {result['cpu_ms_per_claim']} ms CPU")
    out["statements"] = probe(h.ROOT, STATEMENTS, [], {})
    print()
    h.print_table(
        ["code", "due jobs", "jobs/claim", "CPU ms/claim", "wall ms/claim", "CPU us/job"], rows
    )
    s = out["statements"]
    print(
        f"\none statement (SQLite, in memory): built {s['build_only_us']} us; built and run "
        f"{s['build_and_run_us']} us; run when built once {s['run_built_once_us']} us; "
        f"the driver alone {s['driver_only_us']} us"
    )
    print(f"\nwrote {h.write_results('claims', out, args.json)}")


if __name__ == "__main__":
    main()
