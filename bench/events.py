"""Activity events: batch ingest throughput and the trigger pass over every customer.

On a freshly migrated database it feeds N activity events (default 1,000,000) for C
customers (default 100,000) through ``crm_core.events.ingest`` in batches of 1,000, one
transaction per batch as ``POST /api/v1/events`` runs it (``Database.run_session``: on
SQLite, in one hop to the writer thread): validation, customer resolution by email (each
customer is created by its first event), idempotent insert, enrollments, scores, journey
and the triggers for the customers the batch touched. Events are spread over the last 60
days, every customer follows one program, and types are mixed as a platform would send
them. Then, over all customers:

- the trigger pass as the scheduler runs it (``interventions.evaluate``), in the steady
  state (the event path has already fired what the events caused);
- the same pass cold, with every intervention forgotten, so that all of them fire again;
- the nightly score refresh of every customer.

Targets (issue): >= 5,000 events/s, a trigger pass < 60 s for 100,000 customers on SQLite.

    .venv/bin/python bench/events.py                          # SQLite, 1,000,000 / 100,000
    .venv/bin/python bench/events.py --events 50000 --customers 5000 --db both
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness as h
from sqlalchemy import delete, func, select

from crm_core import events, interventions, programs, scores
from crm_core.models import ActivityEvent, Customer, Intervention
from heliograph.db import Database
from heliograph.migrate import upgrade
from heliograph.models import Job
from heliograph.runtime import settle_collector
from heliograph.settings import Settings
from service.components import load_components

TARGET_EVENTS_PER_S = 5000
TARGET_PASS_S = 60.0
PROGRAMS = [
    ("soul-1", "soul", 120, 1), ("soul-2", "soul", 290, 2), ("mind-1", "mind", 99, 1),
    ("mind-2", "mind", 249, 2), ("body-1", "body", 79, 1), ("body-2", "body", 199, 2),
    ("rel-1", "relationships", 149, 1), ("rel-2", "relationships", 320, 2),
]  # fmt: skip
TYPES = [  # (type, weight)
    ("course_progress", 30), ("lesson_completed", 28), ("live_call_attended", 8),
    ("community_post", 12), ("purchase", 6), ("refund", 0.5), ("support_ticket", 6),
    ("milestone_reported", 2), ("referral", 0.5),
]  # fmt: skip


def make_event(
    rng: random.Random, i: int, customers: int, now: datetime, run: int = 0
) -> dict[str, Any]:
    c = rng.randrange(customers)
    kind = rng.choices([t for t, _ in TYPES], [w for _, w in TYPES])[0]
    code, _, price, _ = PROGRAMS[c % len(PROGRAMS)]
    e: dict[str, Any] = {
        "type": kind,
        "idempotency_key": f"bench-{run}-{i}",
        "occurred_at": (now - timedelta(seconds=rng.randrange(60 * 86400))).isoformat(),
        "customer": {"email": f"student{c}@example.com"},
    }
    if kind in ("course_progress", "lesson_completed", "live_call_attended", "purchase", "refund"):
        e["program"] = code
    if kind == "course_progress":
        e["progress"] = min(100, rng.randrange(0, 110))
    elif kind in ("purchase", "refund"):
        e["amount"] = str(price)
    elif kind == "live_call_attended":
        e["attended"] = rng.random() > 0.2
    elif kind == "support_ticket":
        e["ticket_id"] = f"T{rng.randrange(customers * 3)}"
    elif kind == "milestone_reported":
        e["milestone"] = rng.choice(("30 days in a row", "first retreat", "ran a 5k"))
    elif kind == "referral":
        e["referred_email"] = f"friend{i}@example.com"
    return e


async def setup(db: Database) -> None:
    async with db.session() as session:
        for code, category, price, level in PROGRAMS:
            await programs.create_program(
                session, code=code, name=code.title(), category=category, price=price, level=level
            )
        await session.commit()


async def ingest_all(db: Database, n: int, customers: int, batch: int, seed: int) -> dict[str, Any]:
    """Ingest ``n`` events; the clock runs only inside ``events.ingest`` and its commit
    (the server's work), not while this script makes up the next batch."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    latencies: list[float] = []
    accepted = duplicates = errors = fired = 0
    started = time.perf_counter()
    for first in range(0, n, batch):
        body = [
            make_event(rng, i, customers, now, seed) for i in range(first, min(first + batch, n))
        ]
        t0 = time.perf_counter()
        result = await db.run_session(functools.partial(events.ingest, raw_events=body))
        latencies.append((time.perf_counter() - t0) * 1000)
        accepted += result.accepted
        duplicates += result.duplicates
        errors += len(result.errors)
        fired += result.interventions
        if len(latencies) % 100 == 0:
            done = first + len(body)
            print(f"  {done:>9,} events  {done / (sum(latencies) / 1000):>8,.0f}/s",
                  file=sys.stderr)  # fmt: skip
    wall = time.perf_counter() - started
    seconds = sum(latencies) / 1000
    # the last batch again: all duplicates, no change
    replay = await db.run_session(functools.partial(events.ingest, raw_events=body))
    assert replay.accepted == 0 and replay.duplicates == len(body), replay.body()
    return {
        "events": n,
        "accepted": accepted,
        "duplicates": duplicates,
        "errors": errors,
        "interventions_on_events": fired,
        "seconds": round(seconds, 2),
        "events_per_s": round(n / seconds),
        "wall_seconds_with_generation": round(wall, 2),
        "batch_ms": h.summarize_ms(latencies),
    }


async def timed_pass(db: Database) -> tuple[float, interventions.PassResult]:
    t0 = time.perf_counter()
    result = await db.run_session(interventions.evaluate)
    return time.perf_counter() - t0, result


async def run_one(url: str, args: argparse.Namespace) -> dict[str, Any]:
    db = Database(Settings(database_url=url))
    try:
        await setup(db)
        if args.gc_freeze:
            # What a long-running server does after start-up (``heliograph serve`` and
            # ``heliograph worker``): freeze what is loaded, collect less often.
            settle_collector()
        print(f"ingesting {args.events:,} events for {args.customers:,} customers", file=sys.stderr)
        ingest = await ingest_all(db, args.events, args.customers, args.batch, args.seed)
        steady_s, steady = await timed_pass(db)
        async with db.session() as session:
            await session.execute(delete(Intervention))
            await session.execute(delete(Job))
            await session.commit()
        cold_s, cold = await timed_pass(db)
        t0 = time.perf_counter()
        refreshed = await scores.refresh_stale(db, now=datetime.now(UTC) + timedelta(days=1))
        nightly_s = time.perf_counter() - t0
        async with db.read_session() as session:
            customers = (await session.execute(select(func.count()).select_from(Customer))).scalar()
            stored = (
                await session.execute(select(func.count()).select_from(ActivityEvent))
            ).scalar()
    finally:
        await db.dispose()
    return {
        "customers": customers,
        "events_stored": stored,
        "ingest": ingest,
        "trigger_pass_steady": {"seconds": round(steady_s, 2), "created": steady.created,
                                "candidates": steady.candidates},
        "trigger_pass_cold": {"seconds": round(cold_s, 2), "created": cold.created,
                              "by_rule": cold.by_rule},
        "nightly_scores": {"seconds": round(nightly_s, 2), "customers": refreshed},
    }  # fmt: skip


def database_url(kind: str) -> tuple[str, Any]:
    if kind == "sqlite":
        path = h.VAR / "events.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        h.remove_sqlite(path)
        return f"sqlite+aiosqlite:///{path}", lambda: h.remove_sqlite(path)
    name = h.pg_create("bench_events")
    return h.pg_url(name), lambda: h.pg_drop(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--no-gc-freeze", dest="gc_freeze", action="store_false",
        help="leave the collector as CPython starts it, not as a server settles it (slower)",
    )  # fmt: skip
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # sqlmodel's execute() hint
    load_components()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    report: dict[str, Any] = {
        "benchmark": "events",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": h.machine_info(),
        "config": {
            **{k: getattr(args, k) for k in ("events", "customers", "batch", "seed", "gc_freeze")},
            "timed": "Database.run_session(crm_core.events.ingest) per batch of --batch events, "
            "in-process, one transaction per batch (the work of POST /api/v1/events without "
            "HTTP/JSON)",
        },
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "trigger_pass_s": TARGET_PASS_S},
        "results": {},
    }
    rows = []
    for kind in kinds:
        if kind == "postgres" and not h.pg_available():
            print("PostgreSQL is not reachable; skipped", file=sys.stderr)
            continue
        url, cleanup = database_url(kind)
        try:
            upgrade(url)
            result = asyncio.run(run_one(url, args))
        finally:
            cleanup()
        report["results"][kind] = result
        rows.append([
            kind, f"{result['ingest']['events_per_s']:,}", result["ingest"]["batch_ms"]["p99_ms"],
            result["trigger_pass_steady"]["seconds"], result["trigger_pass_cold"]["seconds"],
            f"{result['trigger_pass_cold']['created']:,}", result["nightly_scores"]["seconds"],
        ])  # fmt: skip
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    h.print_table(
        ["db", "events/s", "batch p99 ms", "pass s (steady)", "pass s (cold)", "fired (cold)",
         "nightly scores s"],
        rows,
    )  # fmt: skip
    path = h.write_results("events", report, args.out)
    print(f"targets: >= {TARGET_EVENTS_PER_S:,} events/s, trigger pass < {TARGET_PASS_S:.0f} s")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
