"""Customer lookup latency: ``search_customers`` by phone, email and channel id.

Builds (or reuses from var/bench/) a database of 1,000,000 customers, each with an email,
an E.164 phone and a Telegram identity (bench/lookup_data.py), migrated with Heliograph's
own migrations. Then, in this process, it times ``crm_core.identity.search_customers``
through a read session of ``heliograph.db.Database`` (one session per lookup, as an API
request would open) for random existing customers: phones typed in several formats
(``+44 7400 000123``, ``+1-646-200-0123``, digits without ``+``), emails in mixed case,
and Telegram ids. Every answer is checked to contain the expected customer. It reports
p50/p95/p99 per kind and the database time per SQL statement. Target (issue): p99 < 5 ms
among 1,000,000 customers.

    .venv/bin/python bench/lookup.py                      # SQLite, 1,000,000 customers
    .venv/bin/python bench/lookup.py --db both --explain
    .venv/bin/python bench/lookup.py --quick              # 20,000 customers, 300 lookups
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness as h
import lookup_data as data
import phonenumbers
from sqlalchemy import event

from crm_core.identity import search_customers
from heliograph.db import Database
from heliograph.settings import Settings
from service.components import load_components

TARGET_P99_MS = 5.0
TARGET_CUSTOMERS = 1_000_000
KINDS = ("phone", "email", "channel_id")
_TABLE = re.compile(r"\bFROM (\w+)", re.I)
_CONDITIONS = re.compile(r"(\w+\.\w+) (=|IN|>=|<|IS)", re.I)


def phone_variants(e164: str) -> list[str]:
    """How people type a number: as stored, spaced, dashed, digits without the plus."""
    spaced = phonenumbers.format_number(
        phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return [e164, spaced, spaced.replace(" ", "-"), e164.lstrip("+")]


def mixed_case(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in text)


def make_queries(customers: int, per_kind: int, seed: int) -> list[tuple[str, str, int]]:
    """``(kind, query, expected customer id)``, kinds interleaved at random."""
    rng = random.Random(seed)
    queries: list[tuple[str, str, int]] = []
    for _ in range(per_kind):
        i = rng.randint(1, customers)
        queries.append(("phone", rng.choice(phone_variants(data.phone(i))), i))
        i = rng.randint(1, customers)
        pad = " " if rng.random() < 0.2 else ""
        queries.append(("email", f"{pad}{mixed_case(rng, data.email(i))}{pad}", i))
        i = rng.randint(1, customers)
        queries.append(("channel_id", data.telegram_id(i), i))
    rng.shuffle(queries)
    return queries


def statement_label(sql: str) -> str:
    """``table: column op, ...`` - enough to tell the statements of search_customers apart."""
    table = _TABLE.search(sql)
    conditions = ", ".join(f"{col} {op.upper()}" for col, op in _CONDITIONS.findall(sql))
    return f"{table.group(1) if table else sql.split()[0]}: {conditions}"


class StatementClock:
    """Database time per statement, measured around the driver call (thread hop included)."""

    def __init__(self, db: Database) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.samples: dict[str, tuple[str, Any]] = {}
        self.enabled = False
        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, _cur: Any, sql: str, params: Any, _ctx: Any, _many: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, _cur: Any, sql: str, params: Any, _ctx: Any, _many: Any) -> None:
        if not self.enabled or sql.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            return
        name = statement_label(sql)
        self.times[name].append((time.perf_counter() - conn.info.pop("bench_t0")) * 1000)
        self.samples.setdefault(name, (sql, params))


async def run_lookups(
    db: Database, warmup: list[tuple[str, str, int]], queries: list[tuple[str, str, int]], c: int
) -> tuple[dict[str, list[float]], dict[str, int], StatementClock]:
    clock = StatementClock(db)
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    misses: dict[str, int] = dict.fromkeys(KINDS, 0)

    async def lookup(kind: str, query: str, expected: int, timed: bool) -> None:
        started = time.perf_counter()
        async with db.read_session() as session:
            found = await search_customers(session, query)
        elapsed = (time.perf_counter() - started) * 1000
        if timed:
            latencies[kind].append(elapsed)
            misses[kind] += expected not in {customer.id for customer in found}

    for item in warmup:
        await lookup(*item, timed=False)
    clock.enabled = True
    pending = iter(queries)

    async def worker() -> None:
        for item in pending:
            await lookup(*item, timed=True)

    await asyncio.gather(*(worker() for _ in range(c)))
    return latencies, misses, clock


async def explain(db: Database, clock: StatementClock) -> dict[str, list[str]]:
    """The database's plan for each statement search_customers ran."""
    plans: dict[str, list[str]] = {}
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    async with db.engine.connect() as conn:
        for name, (sql, params) in clock.samples.items():
            rows = await conn.exec_driver_sql(prefix + sql, params)
            plans[name] = [" ".join(str(v) for v in row[-1:]) for row in rows]
    return plans


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    db = Database(Settings(database_url=url, api_inbound_secret=""))
    warmup = make_queries(args.customers, args.warmup, args.seed + 1)
    queries = make_queries(args.customers, args.lookups, args.seed)
    try:
        started = time.perf_counter()
        latencies, misses, clock = await run_lookups(db, warmup, queries, args.concurrency)
        seconds = time.perf_counter() - started
        plans = await explain(db, clock) if args.explain else {}
    finally:
        await db.dispose()
    kinds = {kind: {**h.summarize_ms(latencies[kind]), "misses": misses[kind]} for kind in KINDS}
    statements: dict[str, dict[str, Any]] = {
        name: {**h.summarize_ms(times), "per_lookup": round(len(times) / len(queries), 2)}
        for name, times in sorted(clock.times.items())
    }
    for name, plan in plans.items():
        statements[name]["plan"] = plan
    return {"kinds": kinds, "statements": statements, "seconds": round(seconds, 1)}


def run_db(db: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"  {db}: preparing {args.customers:,} customers ...", flush=True)
    if db == "sqlite":
        build = data.build_sqlite(args.customers, args.rebuild)
        url = f"sqlite+aiosqlite:///{build['path']}"
    else:
        build = data.build_pg(args.customers, args.pg_dsn, args.rebuild)
        url = h.pg_url(build["database"], args.pg_dsn)
    state = "cached" if build["cached"] else f"built in {build.get('build_seconds')} s"
    print(f"  {db}: database {state}; {args.lookups} lookups per kind ...", flush=True)
    try:
        result = asyncio.run(measure(url, args))
    finally:
        if db == "postgres" and not args.keep:
            h.pg_drop(build["database"], args.pg_dsn)
    return {"build": build, **result}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=TARGET_CUSTOMERS)
    parser.add_argument("--n", "--lookups", dest="lookups", type=int, default=2000,
                        help="timed lookups per kind")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=100, help="untimed lookups per kind")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="lookups in flight at once (default 1)"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="20,000 customers, 300 lookups")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached database")
    parser.add_argument("--explain", action="store_true", help="record each statement's plan")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--pg-dsn", default=h.DEFAULT_PG_DSN)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--out", type=Path, help="default bench/results/lookup.json")
    args = parser.parse_args()
    if args.quick:
        args.customers = min(args.customers, 20_000)
        args.lookups = min(args.lookups, 300)
        args.warmup = min(args.warmup, 30)
    return args


def main() -> None:
    args = parse_args()
    load_components()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs and not h.pg_available(args.pg_dsn):
        if args.db == "postgres":
            raise SystemExit(f"PostgreSQL is not reachable at {args.pg_dsn}")
        print(f"PostgreSQL is not reachable at {args.pg_dsn}: skipping it", file=sys.stderr)
        dbs.remove("postgres")
    machine = h.machine_info()
    if "postgres" in dbs:
        machine["postgres"] = h.pg_server_version(args.pg_dsn)
    print(
        f"lookup: {args.customers:,} customers, {args.lookups} lookups per kind, "
        f"concurrency {args.concurrency}, "
        f"cores={machine['cores']} load={machine['loadavg_at_start']}"
    )
    report: dict[str, Any] = {
        "benchmark": "lookup",
        "quick": args.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {
            "customers": args.customers,
            "lookups_per_kind": args.lookups,
            "concurrency": args.concurrency,
            "warmup_per_kind": args.warmup,
            "seed": args.seed,
            "timed": "search_customers() inside `async with Database.read_session()`, "
            "one session per lookup, --concurrency lookups at a time, in-process",
        },
        "results": {},
        "targets": {},
    }
    for db in dbs:
        result = run_db(db, args)
        report["results"][db] = result
        p99 = {kind: r["p99_ms"] for kind, r in result["kinds"].items()}
        errors = sum(r["misses"] for r in result["kinds"].values())
        report["targets"][db] = {
            "p99_max_ms": TARGET_P99_MS,
            "p99_ms": p99,
            "met": all(v < TARGET_P99_MS for v in p99.values()) and errors == 0,
        }
        if args.customers != TARGET_CUSTOMERS:
            report["targets"][db]["note"] = (
                f"the target is stated for {TARGET_CUSTOMERS:,} customers; "
                f"this run had {args.customers:,}"
            )
    print_report(report)
    out = h.write_results("lookup", report, args.out)
    print(f"\nwrote {out.relative_to(h.ROOT) if out.is_relative_to(h.ROOT) else out}")


def print_report(report: dict[str, Any]) -> None:
    for db, result in report["results"].items():
        print()
        rows = [
            [db, kind, r["count"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"], r["misses"]]
            for kind, r in result["kinds"].items()
        ]
        h.print_table(
            ["db", "kind", "lookups", "p50 ms", "p95 ms", "p99 ms", "max ms", "misses"], rows
        )
        print(f"\n  database time per statement ({db}):")
        srows = [
            [name, s["per_lookup"], s["p50_ms"], s["p99_ms"]]
            for name, s in result["statements"].items()
        ]
        h.print_table(["statement", "per lookup", "p50 ms", "p99 ms"], srows)
        for name, s in result["statements"].items():
            if "plan" in s:
                print(f"    plan of {name}: {' | '.join(s['plan'])}")
        verdict = report["targets"][db]
        state = "MET" if verdict["met"] else "MISSED"
        note = f" ({verdict['note']})" if "note" in verdict else ""
        print(f"\n{db}: target p99 < {TARGET_P99_MS:.0f} ms for every kind: {state}{note}")


if __name__ == "__main__":
    main()
