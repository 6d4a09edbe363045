"""Ingest throughput and latency: Heliograph's channel webhooks against a bare FastAPI app.

For each database (SQLite, then PostgreSQL) it starts, one after the other:
- ``heliograph serve`` on a freshly migrated database, workers and scheduler on as in
  production, receiving ``POST /api/v1/inbound`` (HMAC verified, parsed, customer
  resolved, conversation threaded, message stored, all in one transaction);
- bench/bare_app.py on the same kind of fresh database, storing the raw body in one table.

A separate load-generator process (bench/loadgen.py; wrk where installed) sends a warm-up
batch, then N distinct pre-signed messages from about N/10 senders (so both new and
returning customers occur) at concurrency C, and reports throughput, p50/p99 latency and
errors. Also measured: the server's CPU time per request, which a busy machine disturbs
far less than throughput; whether every acknowledged message is on disk; and, since each
message also queues follow-up jobs (routing), how long the workers need afterwards to
drain them, and so the end-to-end rate. Target (issue): Heliograph >= 0.5x the
baseline's throughput and p99 < 50 ms at C=32 on SQLite.

Traffic (``--traffic``): ``api`` (our signed JSON API), ``sms`` (Twilio's signed form
webhook, ``X-Twilio-Signature``) and ``whatsapp`` (Meta's Cloud API notification,
``X-Hub-Signature-256``), each measured on its own. ``--before DIR`` adds the target
``before``: the same server started from another checkout (e.g. a git worktree of the
previous commit), so the code before and after a change is measured in one run, on one
machine, back to back.

    .venv/bin/python bench/ingest.py                  # N=5000, C=32, SQLite and PostgreSQL
    .venv/bin/python bench/ingest.py --quick --db sqlite
    .venv/bin/python bench/ingest.py --db sqlite --targets heliograph,heliograph-no-workers,bare
    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/ingest.py --targets heliograph,before --before /tmp/before --rounds 3

``--rounds K`` runs the targets K times, alternating, and reports each target's median
round (every round's figures are kept beside it): on a shared machine one round of each
can differ by 20% from the next.

The target ``heliograph-no-workers`` is Heliograph with workers and scheduler off: beside
``heliograph`` in the same run it shows what the follow-up jobs take from the requests.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import harness as h

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_CONCURRENCY = 32
TEXTS = (
    "Hi, my order has not arrived yet, can you check?",
    "Hello! How do I change the email on my account?",
    "The payment went through twice, please refund one of them.",
    "Thanks, that worked.",
    "Is the course still available in Spanish?",
    "Can I talk to someone about the annual plan?",
    "ok",
)
NAMES = ("Ana", "Wei", "Olga", "Tom", "Aisha", "Raj", "Mia", "Ivan", "Siti", "Lucas")
# Where each kind of traffic arrives; the bare baseline takes any body on /ingest.
PATHS = {
    "api": "/api/v1/inbound",
    "sms": "/webhooks/twilio/messages",
    "whatsapp": "/webhooks/whatsapp",
}
# Twilio signs the public URL it calls; with this one the signature does not depend on the port.
PUBLIC_URL = "http://bench.invalid"
SMS_TO = "+15558675310"
PHONE_NUMBER_ID = "106540352242922"
SEP = "\x1f"  # between the headers of one request line (bench/loadgen.py)


@dataclass(frozen=True)
class Secrets:
    api: str
    twilio: str
    whatsapp: str

    @staticmethod
    def new() -> Secrets:
        return Secrets(secrets.token_hex(32), secrets.token_hex(16), secrets.token_hex(16))

    def env(self) -> dict[str, str]:
        """Every channel the traffic uses, configured; providers' APIs unreachable on purpose
        (a wait notice to a customer then fails fast instead of leaving the machine)."""
        dead = "http://127.0.0.1:9"
        return {
            "HELIOGRAPH_PUBLIC_URL": PUBLIC_URL,
            "HELIOGRAPH_API_INBOUND_SECRET": self.api,
            "HELIOGRAPH_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "HELIOGRAPH_TWILIO_AUTH_TOKEN": self.twilio,
            "HELIOGRAPH_TWILIO_SMS_FROM": SMS_TO,
            "HELIOGRAPH_TWILIO_API_BASE": dead,
            "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN": secrets.token_hex(16),
            "HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            "HELIOGRAPH_WHATSAPP_APP_SECRET": self.whatsapp,
            "HELIOGRAPH_WHATSAPP_VERIFY_TOKEN": secrets.token_hex(8),
            "HELIOGRAPH_WHATSAPP_API_BASE": dead,
        }


def sender(prefix: str, number: int) -> dict[str, str]:
    """A sender of the API channel; some say their email and phone, as real callers do."""
    who = {"id": f"{prefix}-{number}", "name": f"{NAMES[number % len(NAMES)]} {number}"}
    if number % 2 == 0:
        who["email"] = f"{prefix}.{number}@example.com"
    if number % 3 == 0:
        who["phone"] = f"+4477009{number:05d}"
    return who


def phone(number: int) -> str:
    return f"+4477009{number:05d}"


def compact(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def signed_json(body: str, secret: str, header: str) -> dict[str, str]:
    """The headers of JSON ``body`` signed as our API and Meta sign: ``sha256=`` and the hex
    HMAC-SHA256 of the body, in ``header``."""
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", header: f"sha256={digest}"}


def api_body(message_id: str, who: dict[str, str], text: str) -> str:
    return compact({"message_id": message_id, "sender": who, "text": text})


def signed_api(body: str, secret: str) -> dict[str, str]:
    return signed_json(body, secret, "X-Heliograph-Signature")


def sms_form(key: str, account_sid: str, sender: str, to: str, text: str) -> dict[str, str]:
    """Twilio's incoming-message webhook (tests/fixtures/twilio/sms.json); its message id is
    derived from ``key``."""
    sid = "SM" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "From": sender,
        "To": to,
        "Body": text,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def signed_sms(url: str, form: dict[str, str], auth_token: str) -> dict[str, str]:
    """The headers of ``form`` posted to ``url``, signed as Twilio signs it: HMAC-SHA1 of the
    URL and the sorted parameters, base64."""
    data = url + "".join(k + form[k] for k in sorted(form))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": base64.b64encode(digest).decode(),
    }


def whatsapp_body(
    key: str, wa_id: str, name: str, timestamp: int, text: str, phone_number_id: str
) -> str:
    """One Cloud API notification with one text message (tests/fixtures/whatsapp/text.json);
    its message id is derived from ``key``."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": "wamid." + base64.b64encode(key.encode()).decode(),
                "timestamp": str(timestamp),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    return compact(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}
            ],
        }
    )


def signed_whatsapp(body: str, app_secret: str) -> dict[str, str]:
    return signed_json(body, app_secret, "X-Hub-Signature-256")


def header_line(headers: dict[str, str]) -> str:
    """Headers as one request line of bench/loadgen.py holds them."""
    return SEP.join(f"{k}: {v}" for k, v in headers.items())


def api_request(prefix: str, i: int, number: int, text: str, keys: Secrets) -> tuple[str, str]:
    body = api_body(f"{prefix}-{i:07d}", sender(f"{prefix}-s", number), text)
    return header_line(signed_api(body, keys.api)), body


def sms_request(prefix: str, i: int, number: int, text: str, keys: Secrets) -> tuple[str, str]:
    form = sms_form(f"{prefix}-{i}", "AC" + "0" * 32, phone(number), SMS_TO, text)
    headers = signed_sms(PUBLIC_URL + PATHS["sms"], form, keys.twilio)
    return header_line(headers), urlencode(form)


def whatsapp_request(prefix: str, i: int, number: int, text: str, keys: Secrets) -> tuple[str, str]:
    body = whatsapp_body(
        f"{prefix}-{i:07d}",
        phone(number).lstrip("+"),
        sender(prefix, number)["name"],
        1749416383 + i,
        text,
        PHONE_NUMBER_ID,
    )
    return header_line(signed_whatsapp(body, keys.whatsapp)), body


REQUESTS = {"api": api_request, "sms": sms_request, "whatsapp": whatsapp_request}


def write_requests(
    path: Path, traffic: str, prefix: str, count: int, senders: int, keys: Secrets
) -> int:
    """Pre-sign ``count`` distinct messages into ``path``; returns the distinct senders."""
    rng = random.Random(f"{prefix}-{count}-{senders}")
    used: set[int] = set()
    build = REQUESTS[traffic]
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            number = rng.randrange(senders)
            used.add(number)
            headers, body = build(f"{traffic}-{prefix}", i, number, rng.choice(TEXTS), keys)
            out.write(f"{headers}\t{body}\n")
    return len(used)


def run_loadgen(args: argparse.Namespace, url: str, path: Path, count: int) -> dict[str, Any]:
    cmd = [sys.executable, str(h.BENCH / "loadgen.py"), url, str(path), "--count", str(count)]
    cmd += ["-c", str(args.concurrency), "--engine", args.engine]
    cmd += ["--threads", str(args.wrk_threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def query(db: str, url: str, sql: str) -> list[tuple[Any, ...]]:
    """A short read on the target's database (WAL lets it run beside the server)."""
    if db == "sqlite":
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def runnable_jobs(db: str, url: str) -> int:
    now = "now()" if db == "postgres" else f"'{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}'"
    sql = (
        "SELECT count(*) FROM job WHERE status = 'running' "
        f"OR (status = 'pending' AND run_at <= {now})"
    )
    return int(query(db, url, sql)[0][0])


def drain(db: str, url: str, server: h.Server, timeout: float) -> tuple[float, bool]:
    """Wait until the workers have run every job that is due; returns (seconds, drained)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout and server.alive():
        if runnable_jobs(db, url) == 0:
            return time.perf_counter() - started, True
        time.sleep(0.1)
    return time.perf_counter() - started, False


def workers_on(target: str, args: argparse.Namespace) -> bool:
    return target in ("heliograph", "before") and not args.no_workers


def cli(root: Path) -> list[str]:
    """The ``heliograph`` command of the checkout at ``root`` (the CLI moved in #15)."""
    module = "service.cli" if (root / "service" / "cli.py").exists() else "heliograph.cli"
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def start_target(
    target: str, url: str, args: argparse.Namespace, keys: Secrets, log: Path, traffic: str
) -> tuple[h.Server, str]:
    port = h.free_port()
    if target == "bare":
        cmd = [sys.executable, str(h.BENCH / "bare_app.py"), "--database-url", url]
        server = h.start_server(target, [*cmd, "--port", str(port)], {}, log, port, "/healthz")
        return server, f"{server.url}/ingest"
    root = args.before if target == "before" else h.ROOT
    env = {
        "HELIOGRAPH_DATABASE_URL": url,
        **keys.env(),
        # The door is measured at full speed: one source sending far past any real burst.
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",
        "HELIOGRAPH_RUN_WORKERS": str(workers_on(target, args)).lower(),
        "HELIOGRAPH_RUN_SCHEDULER": str(workers_on(target, args)).lower(),
    }
    h.run_checked([*cli(root), "migrate"], env, "heliograph migrate", root=root)
    cmd = [*cli(root), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = h.start_server(target, cmd, env, log, port, "/healthz", root=root)
    return server, f"{server.url}{PATHS[traffic]}"


def run_target(
    target: str,
    db: str,
    args: argparse.Namespace,
    files: dict[str, Path],
    keys: Secrets,
    traffic: str,
) -> dict[str, Any]:
    pg_name = None
    if db == "sqlite":
        path = h.VAR / f"ingest-{target}.db"
        h.remove_sqlite(path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        pg_name = h.pg_create(f"ingest_{target}", args.pg_dsn)
        url = h.pg_url(pg_name, args.pg_dsn)
    log = h.VAR / f"ingest-{target}-{db}-{traffic}.log"
    server = None
    try:
        server, endpoint = start_target(target, url, args, keys, log, traffic)
        helio = target != "bare"
        working = workers_on(target, args)
        warm = run_loadgen(args, endpoint, files["warm"], args.warmup)
        if working:
            drain(db, url, server, args.drain_timeout)  # start the clock on an empty queue
        time.sleep(1.0)  # let the warm-up's tail (checkpoints, worker polls) settle
        cpu_before = server.cpu_seconds()
        timed = run_loadgen(args, endpoint, files["timed"], args.n)
        server_cpu = server.cpu_seconds() - cpu_before
        drain_s, drained = 0.0, not helio or working
        if working:
            # Follow-up jobs (routing, ...) the run left queued: how long until they are done.
            drain_s, drained = drain(db, url, server, args.drain_timeout)
        cpu_with_jobs = server.cpu_seconds() - cpu_before
        due_left = runnable_jobs(db, url) if helio else 0
        if not server.alive():
            raise RuntimeError(f"{target} died during the run:\n{server.log_tail()}")
        server.stop()
        log_errors = sum(
            line.startswith(("Traceback", "ERROR")) or " ERROR " in line
            for line in log.read_text(errors="replace").splitlines()
        )
        stored = query(db, url, f"SELECT count(*) FROM {'message' if helio else 'raw_inbound'}")
        jobs = query(db, url, "SELECT status, count(*) FROM job GROUP BY status") if helio else []
        lat = timed["latency_ms"]
        completed = max(1, timed["completed"])
        return {
            "throughput_rps": timed["throughput_rps"],
            "p50_ms": lat["p50"],
            "p90_ms": lat["p90"],
            "p99_ms": lat["p99"],
            "mean_ms": lat["mean"],
            "max_ms": lat["max"],
            "completed": timed["completed"],
            "errors": timed["non_2xx"] + timed["socket_errors"],
            "duration_s": timed["duration_s"],
            "server_cpu_ms_per_request": round(server_cpu * 1000 / completed, 3),
            "jobs_drain_s": round(drain_s, 2),
            "jobs_drained": drained,
            "jobs_due_after_drain": due_left,
            # Messages per second until the last follow-up job ran (unknown if not drained).
            "end_to_end_rps": (
                round(completed / (timed["duration_s"] + drain_s), 1) if drained else None
            ),
            "server_cpu_ms_per_message_with_jobs": round(cpu_with_jobs * 1000 / completed, 3),
            "client_cpu_ms_per_request": round(timed["client_cpu_s"] * 1000 / completed, 3),
            "warmup_errors": warm["non_2xx"] + warm["socket_errors"],
            "acknowledged": warm["ok"] + timed["ok"],
            "stored_rows": int(stored[0][0]),
            # An acknowledged message must be on disk (wrk may store a few unacknowledged extras).
            "missing_rows": max(0, warm["ok"] + timed["ok"] - int(stored[0][0])),
            "server_log_errors": log_errors,
            "jobs_after_run": {str(status): int(n) for status, n in jobs},
            "loadgen": timed,
        }
    except Exception:
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        if server is not None:
            server.stop()
        if pg_name is not None and not args.keep:
            h.pg_drop(pg_name, args.pg_dsn)
        if db == "sqlite" and not args.keep:
            h.remove_sqlite(h.VAR / f"ingest-{target}.db")


def median_run(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, with every round's throughput and CPU beside it."""
    middle = sorted(done, key=lambda r: r["throughput_rps"])[(len(done) - 1) // 2]
    if len(done) == 1:
        return middle
    return middle | {
        "rounds_throughput_rps": [r["throughput_rps"] for r in done],
        "rounds_server_cpu_ms_per_request": [r["server_cpu_ms_per_request"] for r in done],
    }


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    helio, bare, before = runs.get("heliograph"), runs.get("bare"), runs.get("before")
    versus_before = {}
    if helio and before:
        # The change under test: this checkout against the one given with --before.
        versus_before = {
            "vs_before_throughput": round(helio["throughput_rps"] / before["throughput_rps"], 3),
            "vs_before_p99": round(helio["p99_ms"] / before["p99_ms"], 2),
            "vs_before_cpu": round(
                before["server_cpu_ms_per_request"] / helio["server_cpu_ms_per_request"], 3
            ),
        }
    if not helio or not bare:
        return versus_before
    idle = runs.get("heliograph-no-workers")
    extra = {}
    if idle:
        # What the workers' follow-up jobs take from the requests, in the same run.
        extra["workers_cpu_ms_per_request"] = round(
            helio["server_cpu_ms_per_request"] - idle["server_cpu_ms_per_request"], 3
        )
        extra["workers_p99_ms"] = round(helio["p99_ms"] - idle["p99_ms"], 2)
    return (
        versus_before
        | extra
        | {
            "throughput": round(helio["throughput_rps"] / bare["throughput_rps"], 3),
            "p50": round(helio["p50_ms"] / bare["p50_ms"], 2),
            "p99": round(helio["p99_ms"] / bare["p99_ms"], 2),
            # bare CPU per request / Heliograph CPU per request: the throughput ratio a machine
            # with a free core for the server would show; far less noisy than wall-clock rates.
            "cpu_capacity": round(
                bare["server_cpu_ms_per_request"] / helio["server_cpu_ms_per_request"], 3
            ),
        }
    )


def judge(db: str, runs: dict[str, Any], ratios: dict[str, Any], c: int) -> dict[str, Any]:
    helio = runs.get("heliograph")
    verdict: dict[str, Any] = {"throughput_ratio_min": TARGET_RATIO}
    if "throughput" in ratios:
        verdict["throughput_ratio"] = ratios["throughput"]
        verdict["throughput_ratio_met"] = ratios["throughput"] >= TARGET_RATIO
    if db == "sqlite" and helio:
        verdict["p99_max_ms"] = TARGET_P99_MS
        verdict["p99_ms"] = helio["p99_ms"]
        verdict["p99_met"] = helio["p99_ms"] < TARGET_P99_MS
        if c != TARGET_CONCURRENCY:
            verdict["note"] = f"the target is stated at C={TARGET_CONCURRENCY}; this run used C={c}"
    met = [v for k, v in verdict.items() if k.endswith("_met")]
    clean = not any(r["errors"] or r["missing_rows"] for r in runs.values())
    verdict["met"] = bool(met) and all(met) and clean
    return verdict


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=5000, help="measured requests per target")
    parser.add_argument("-c", "--concurrency", type=int, default=TARGET_CONCURRENCY)
    parser.add_argument("--warmup", type=int, help="unmeasured requests first (default N/10)")
    parser.add_argument("--senders", type=int, help="distinct senders (default N/10)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--targets",
        default="heliograph,bare",
        help="comma-separated: heliograph, heliograph-no-workers, bare, before",
    )
    parser.add_argument(
        "--traffic", default="api,sms,whatsapp", help="comma-separated: api, sms, whatsapp"
    )
    parser.add_argument(
        "--before", type=Path, help="another checkout to run as the target 'before'"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N=500, warm-up 100")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the targets this many times, alternating; report each target's median round",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--no-workers", action="store_true", help="serve without workers")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait after the run for the queued jobs to be done (0: don't wait)",
    )
    parser.add_argument("--pg-dsn", default=h.DEFAULT_PG_DSN)
    parser.add_argument("--keep", action="store_true", help="keep databases and request files")
    parser.add_argument("--out", type=Path, help="default bench/results/ingest.json")
    args = parser.parse_args()
    if args.quick:
        args.n = min(args.n, 500)
    args.warmup = args.warmup if args.warmup is not None else max(100, args.n // 10)
    args.senders = args.senders or max(1, args.n // 10)
    args.engine = args.loadgen
    if "before" in args.targets and args.before is None:
        parser.error("the target 'before' needs --before DIR")
    if args.engine == "auto":
        args.engine = "wrk" if shutil.which("wrk") else "python"
    return args


def databases(args: argparse.Namespace) -> list[str]:
    wanted = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in wanted and not h.pg_available(args.pg_dsn):
        if args.db == "postgres":
            raise SystemExit(f"PostgreSQL is not reachable at {args.pg_dsn}")
        print(f"PostgreSQL is not reachable at {args.pg_dsn}: skipping it", file=sys.stderr)
        wanted.remove("postgres")
    return wanted


def main() -> None:
    args = parse_args()
    dbs = databases(args)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    h.VAR.mkdir(parents=True, exist_ok=True)
    keys = Secrets.new()
    traffics = [t.strip() for t in args.traffic.split(",") if t.strip()]
    files: dict[str, dict[str, Path]] = {}
    distinct = 0
    for traffic in traffics:
        files[traffic] = {
            "warm": h.VAR / f"ingest-{traffic}-warm.tsv",
            "timed": h.VAR / f"ingest-{traffic}-timed.tsv",
        }
        warm_n = args.warmup + args.concurrency
        write_requests(files[traffic]["warm"], traffic, "warm", warm_n, args.senders, keys)
        distinct = write_requests(
            files[traffic]["timed"], traffic, "bench", args.n + args.concurrency, args.senders, keys
        )
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "quick": args.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": h.machine_info(),
        "config": {
            "n": args.n,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "senders": args.senders,
            "distinct_senders_in_timed_run": distinct,
            "loadgen": args.engine,
            "rounds": args.rounds,
            "traffic": traffics,
            "before": str(args.before) if args.before else None,
            "workers_and_scheduler": not args.no_workers,
            "server": "uvicorn, one process, uvloop + httptools, no access log",
        },
        "runs": {},
        "ratios": {},
        "targets": {},
    }
    if "postgres" in dbs:
        report["machine"]["postgres"] = h.pg_server_version(args.pg_dsn)
    print(
        f"ingest: N={args.n} C={args.concurrency} warm-up={args.warmup} senders={args.senders} "
        f"loadgen={args.engine} workers={'off' if args.no_workers else 'on'} "
        f"cores={report['machine']['cores']} load={report['machine']['loadavg_at_start']}"
    )
    try:
        for db in dbs:
            for traffic in traffics:
                rounds: dict[str, list[dict[str, Any]]] = {target: [] for target in targets}
                for _ in range(args.rounds):  # alternating, so drifting load hits each alike
                    for target in targets:
                        print(f"  {db:8} {traffic:8} {target:10} ...", end="", flush=True)
                        run = run_target(target, db, args, files[traffic], keys, traffic)
                        rounds[target].append(run)
                        print(f" {run['throughput_rps']:.0f} req/s")
                runs = {target: median_run(done) for target, done in rounds.items()}
                key = db if traffic == "api" else f"{db}/{traffic}"
                report["runs"][key] = runs
                report["ratios"][key] = compare(runs)
                report["targets"][key] = judge(db, runs, report["ratios"][key], args.concurrency)
    finally:
        if not args.keep:
            for pair in files.values():
                for path in pair.values():
                    path.unlink(missing_ok=True)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_report(report)
    out = h.write_results("ingest", report, args.out)
    print(f"\nwrote {out.relative_to(h.ROOT) if out.is_relative_to(h.ROOT) else out}")


def print_report(report: dict[str, Any]) -> None:
    rows = []
    for db, runs in report["runs"].items():
        for target, r in runs.items():
            row = [db, target, r["throughput_rps"], r["p50_ms"], r["p99_ms"], r["errors"]]
            row += [r["server_cpu_ms_per_request"], r["client_cpu_ms_per_request"]]
            row += [r["jobs_drain_s"], r["end_to_end_rps"]]
            rows.append(row)
    print()
    headers = ["db", "target", "req/s", "p50 ms", "p99 ms", "errors", "srv CPU ms/req"]
    headers += ["loadgen CPU ms/req", "jobs drain s", "end-to-end msg/s"]
    h.print_table(headers, rows)
    print()
    for db, ratio in report["ratios"].items():
        if "vs_before_throughput" in ratio:
            print(
                f"{db}: this checkout / before: throughput {ratio['vs_before_throughput']:.2f}x, "
                f"p99 {ratio['vs_before_p99']:.2f}x, CPU-based {ratio['vs_before_cpu']:.2f}x"
            )
        if "throughput" not in ratio:
            continue
        verdict = report["targets"][db]
        line = (
            f"{db}: Heliograph/bare throughput {ratio['throughput']:.2f}x "
            f"(CPU-based {ratio['cpu_capacity']:.2f}x), p50 {ratio['p50']:.1f}x, "
            f"p99 {ratio['p99']:.1f}x; target >= {TARGET_RATIO}x"
        )
        if "p99_max_ms" in verdict:
            line += f" and p99 < {TARGET_P99_MS:.0f} ms"
        print(line + (": MET" if verdict["met"] else ": MISSED"))
        if "workers_cpu_ms_per_request" in ratio:
            print(
                f"{db}: the workers' follow-up jobs took "
                f"{ratio['workers_cpu_ms_per_request']:+.2f} ms of server CPU per request "
                f"and {ratio['workers_p99_ms']:+.1f} ms of p99"
            )
    machine = report["machine"]
    print(
        f"load average: {machine['loadavg_at_start']} at start, {machine['loadavg_at_end']} at end"
    )
    for db, runs in report["runs"].items():
        for target, r in runs.items():
            if not r["jobs_drained"]:
                print(
                    f"{db} {target}: {r['jobs_due_after_drain']} jobs still due after "
                    f"{r['jobs_drain_s']:.0f} s of draining"
                )
            if r["missing_rows"]:
                print(f"{db} {target}: {r['missing_rows']} acknowledged messages NOT stored")
            if r["server_log_errors"]:
                print(f"{db} {target}: {r['server_log_errors']} errors in the server log")


if __name__ == "__main__":
    main()
