"""Time to agent (issue #17): a realistic world under an open-loop arrival rate, end to end.

For each database (SQLite with one ``heliograph serve`` process running web, workers and
scheduler; PostgreSQL with ``heliograph serve`` for the web plus one ``heliograph worker``)
it seeds the world of bench/pipeline_world.py (1,000 members in five regions, 100,000
open conversations already threaded in the agents' Slack DMs, customers in many zones and
languages on the API channel, WhatsApp, Telegram and SMS), starts the provider sandbox
(``python -m sandbox``: Slack, Telegram, Twilio, WhatsApp Cloud, the API receiver and
LibreTranslate fakes over real HTTP, every SDK pointed at it as ``heliograph demo`` does),
and the service with Slack agent threads on (DM mode). Then, per rate R, for ``--duration``
seconds, an open-loop scheduler fires customer messages every 1/R s whatever the answers
(a mix of signed API JSON, WhatsApp Cloud notifications, Telegram updates and Twilio SMS
webhooks; one in ten from a new customer), plus agents' replies at R/10 through the REST
API (``POST /api/v1/conversations/{id}/reply`` with the assignee's token). Each message
carries a token (``#i<n>#``, ``#r<n>#``) that is found again in what the sandbox received.

Measured, per rate:
- received -> routed: the message's ``routed_at - received_at`` stamps where the
  ``message`` table has them (issue #17), else the finish of its ``routing.route`` job
  minus the client's send time;
- received -> agent-notified: the sandbox's Slack (or Telegram) received the post that
  shows the message, minus the client's send time (``agent_notified_at - received_at``
  from the stamps beside it when they exist);
- reply -> provider-accepted: the sandbox's provider fake received the reply, minus the
  client's send time of the ``reply`` request (the stamps' ``accepted_at - created_at``
  beside it);
- the backlog when the rate ends (due pending jobs, running jobs, messages not yet shown to
  an agent), then the time to drain it (bounded by ``--drain-timeout``) before the next rate;
- each process's peak RSS (VmHWM), the machine's shared language detector's included.

A rate is held when at most 0.1% of the requests failed, p99 received -> agent-notified
is under 2 s (a message never shown counts as infinitely late), and the backlog at the end
is bounded (fewer than 2 s of arrivals not yet shown, and every job left, of every kind,
done within 5 s: a backlog that takes longer grew while the rate ran). The
door is bench/ingest.py's acknowledged API messages/s with workers off, on the same kind
of database, measured first in the same run; the targets are ratios to it: the highest rate
held >= 0.25x the door (stretch 0.5x), and at a quarter of the door's rate (added to the
rates unless ``--no-quarter``) p99 received -> routed < 1 s and p99 reply -> accepted <
500 ms. Rates above the first one missed are skipped unless ``--all-rates``.

    .venv/bin/python bench/pipeline.py --quick --db sqlite          # smoke run, ~2 min
    nice -n 10 .venv/bin/python bench/pipeline.py                   # the issue's run
    .venv/bin/python bench/pipeline.py --db sqlite --rates 25,50,100 --duration 20 \\
        --members 200 --conversations 20000
    git worktree add /tmp/before <commit>        # the code before, beside this checkout
    .venv/bin/python bench/pipeline.py --code /tmp/before ...        # before and after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import harness as h
import ingest
import pipeline_world as pw
from loadgen import _read_response

HELD_P99_MS = 2000.0
# Bounded: what is left when the arrivals stop (every kind of job, translations and CRM
# passes included, not only the agents' notifications) is done within this many seconds.
# A backlog that takes longer grew during the rate: at that rate the work falls behind.
HELD_DRAIN_S = 5.0
ROUTED_P99_MS = 1000.0
ACCEPTED_P99_MS = 500.0
MAX_ERROR_SHARE = 0.001
NEW_CUSTOMER_SHARE = 0.1
PG_NAME = "bench_pipeline"
TOKEN = re.compile(r"#([ir])(\d+)#")
TEXTS = {
    "en": (
        "my order has not arrived yet, can you check?",
        "how do I change my email?",
        "the payment went through twice, please refund one",
        "thanks, that worked",
    ),
    "es": ("mi pedido no ha llegado todavía", "¿cómo cambio mi correo electrónico?"),
    "pt": ("meu pedido ainda não chegou", "o pagamento foi cobrado duas vezes"),
    "de": ("meine Bestellung ist noch nicht angekommen", "wie ändere ich meine E-Mail?"),
    "fr": ("ma commande n'est pas encore arrivée", "comment changer mon adresse e-mail ?"),
    "ru": ("мой заказ ещё не пришёл", "как изменить электронную почту?"),
    "tr": ("siparisim henuz gelmedi", "e-posta adresimi nasil degistirebilirim?"),
    "ms": ("pesanan saya belum sampai lagi", "bagaimana saya tukar emel saya?"),
    "it": ("il mio ordine non è ancora arrivato", "come cambio la mia email?"),
    "ja": ("注文した商品がまだ届きません", "メールアドレスを変更するには"),
}
REPLY_TEXTS = (
    "Thanks for your patience, I am looking into it now.",
    "I have refunded the second payment; it shows in 3 to 5 days.",
    "You can change it under Settings, Account.",
)


# ---------------------------------------------------------------- requests


@dataclass
class Req:
    kind: str  # "in" or "reply"
    seq: int
    channel: str
    new: bool
    data: bytes
    at: float = 0.0  # scheduled offset, seconds
    sent: float | None = None  # wall clock when written
    lag: float = 0.0
    status: int = 0
    latency_ms: float | None = None


@dataclass
class Keys:
    env: dict[str, str]

    @property
    def api(self) -> str:
        return self.env["HELIOGRAPH_API_INBOUND_SECRET"]


def http_request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


class Builder:
    """Signed requests of each channel, as the providers send them."""

    def __init__(self, world: pw.World, env: dict[str, str], server_url: str) -> None:
        self.world, self.env, self.url = world, env, server_url
        self.host = urlsplit(server_url).netloc
        self.next_new = world.customers + 1

    def inbound(self, seq: int, rng: random.Random) -> Req:
        new = rng.random() < NEW_CUSTOMER_SHARE
        if new:
            i = self.next_new
            self.next_new += 1
        else:
            i = rng.randrange(1, self.world.customers + 1)
        channel = pw.channel_of(i)
        lang = pw.place_of(i)[0]
        text = f"#i{seq}# " + rng.choice(TEXTS.get(lang, TEXTS["en"]))
        build = getattr(self, f"_{channel}")
        path, headers, body = build(seq, i, text, lang)
        return Req("in", seq, channel, new, http_request(self.host, path, headers, body))

    def _api(self, seq: int, i: int, text: str, lang: str) -> tuple[str, dict[str, str], bytes]:
        sender = {"id": pw.api_sender(i), "name": pw.people.name(i)}
        if i % 2 == 0:
            sender["email"] = pw.people.email(i)
        body = ingest.api_body(f"pl-{seq}", sender, text)
        headers = ingest.signed_api(body, self.env["HELIOGRAPH_API_INBOUND_SECRET"])
        return "/api/v1/inbound", headers, body.encode()

    def _sms(self, seq: int, i: int, text: str, lang: str) -> tuple[str, dict[str, str], bytes]:
        env = self.env
        form = ingest.sms_form(
            f"pl-{seq}",
            env["HELIOGRAPH_TWILIO_ACCOUNT_SID"],
            pw.phone(i),
            env["HELIOGRAPH_TWILIO_SMS_FROM"],
            text,
        )
        path = "/webhooks/twilio/messages"
        headers = ingest.signed_sms(self.url + path, form, env["HELIOGRAPH_TWILIO_AUTH_TOKEN"])
        return path, headers, urlencode(form).encode()

    def _whatsapp(
        self, seq: int, i: int, text: str, lang: str
    ) -> tuple[str, dict[str, str], bytes]:
        body = ingest.whatsapp_body(
            f"pl-{seq}",
            pw.phone(i).lstrip("+"),
            pw.people.name(i),
            int(time.time()),
            text,
            self.env["HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID"],
        )
        headers = ingest.signed_whatsapp(body, self.env["HELIOGRAPH_WHATSAPP_APP_SECRET"])
        return "/webhooks/whatsapp", headers, body.encode()

    def _telegram(
        self, seq: int, i: int, text: str, lang: str
    ) -> tuple[str, dict[str, str], bytes]:
        chat = pw.telegram_chat(i)
        first = pw.people.name(i).split()[0]
        body = json.dumps(
            {
                "update_id": seq,
                "message": {
                    "message_id": seq,
                    "date": int(time.time()),
                    "chat": {"id": chat, "type": "private", "first_name": first},
                    "from": {
                        "id": chat,
                        "is_bot": False,
                        "first_name": first,
                        "language_code": lang,
                    },
                    "text": text,
                },
            },
            separators=(",", ":"),
        ).encode()
        return (
            "/webhooks/telegram",
            {
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": self.env["HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET"],
            },
            body,
        )

    def reply(self, seq: int, conversation: int, member: int, rng: random.Random) -> Req:
        body = json.dumps({"text": f"#r{seq}# " + rng.choice(REPLY_TEXTS)}).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {pw.token(member)}",
        }
        path = f"/api/v1/conversations/{conversation}/reply"
        data = http_request(self.host, path, headers, body)
        return Req("reply", seq, pw.channel_of(conversation), False, data)


# ---------------------------------------------------------------- the open loop


class OpenLoop:
    """Fires each request at its time whatever the earlier ones are doing: a pool of
    keep-alive connections, a new one opened when none is free (up to ``max_conns``)."""

    def __init__(self, url: str, max_conns: int = 1024) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_conns)
        self.opened = 0
        self.resent = 0  # sent again after a stale kept-alive connection

    async def send(self, req: Req, due: float) -> None:
        async with self.slots:
            req.lag = time.perf_counter() - due
            req.sent = time.time()
            started = time.perf_counter()
            # A kept-alive connection the server closed while it sat idle (uvicorn closes
            # them after 5 s) fails before any answer: sent again on a new one, as HTTP
            # clients do. Any other failure counts as an error.
            for attempt in range(2):
                reused = bool(self.idle) and attempt == 0  # the second try: a new one
                if reused:
                    reader, writer = self.idle.pop()
                else:
                    try:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    except OSError:
                        req.status = -1
                        return
                    self.opened += 1
                try:
                    writer.write(req.data)
                    status, close = await asyncio.wait_for(_read_response(reader), 60)
                except (OSError, asyncio.IncompleteReadError, RuntimeError, TimeoutError) as exc:
                    writer.close()
                    stale = reused and isinstance(exc, (OSError, asyncio.IncompleteReadError))
                    if stale and attempt == 0:
                        self.resent += 1
                        continue
                    req.status = -1
                    return
                break
            req.latency_ms = (time.perf_counter() - started) * 1000
            req.status = status
            if close:
                writer.close()
            else:
                self.idle.append((reader, writer))

    async def run(self, reqs: list[Req]) -> float:
        """Fire ``reqs`` at their ``at`` offsets from now; returns the seconds it took."""
        t0 = time.perf_counter()
        tasks = []
        for req in reqs:
            due = t0 + req.at
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.send(req, due)))
        fired = time.perf_counter() - t0
        await asyncio.gather(*tasks)
        return fired

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def schedule(
    rate: float,
    duration: float,
    builder: Builder,
    seq0: int,
    targets: list[tuple[int, int]],
    rng: random.Random,
) -> list[Req]:
    """Customer messages every 1/rate s, agents' replies every 10/rate s, merged by time."""
    reqs = []
    n_in = int(rate * duration)
    for k in range(n_in):
        req = builder.inbound(seq0 + k, rng)
        req.at = k / rate
        reqs.append(req)
    n_reply = int(rate / 10 * duration)
    for k in range(n_reply):
        conversation, member = targets[(seq0 + k * 7919) % len(targets)]
        req = builder.reply(seq0 + n_in + k, conversation, member, rng)
        req.at = (k + 0.5) * 10 / rate
        reqs.append(req)
    reqs.sort(key=lambda r: r.at)
    return reqs


def fire(url: str, reqs: list[Req]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        loop = OpenLoop(url)
        try:
            fired = await loop.run(reqs)
        finally:
            loop.close()
        return {"fired_s": round(fired, 3), "connections": loop.opened, "resent": loop.resent}

    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


# ---------------------------------------------------------------- reading back


def to_epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def db_time(db: str, at: datetime) -> str:
    return "now()" if db == "postgres" else f"'{at:%Y-%m-%d %H:%M:%S.%f}'"


def backlog(db: str, url: str) -> dict[str, int]:
    now = db_time(db, datetime.now(UTC))
    rows = ingest.query(
        db,
        url,
        "SELECT "
        f"sum(CASE WHEN status = 'pending' AND run_at <= {now} THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN status = 'pending' AND run_at > {now} THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) FROM job",
    )
    due, running, later, dead = (int(x or 0) for x in rows[0])
    return {"due_jobs": due, "running_jobs": running, "later_jobs": later, "dead_jobs": dead}


def due_by_kind(db: str, url: str) -> dict[str, int]:
    """Due pending jobs by kind, most first: what fell behind."""
    now = db_time(db, datetime.now(UTC))
    rows = ingest.query(
        db,
        url,
        f"SELECT kind, count(*) FROM job WHERE status = 'pending' AND run_at <= {now} "
        "GROUP BY kind ORDER BY count(*) DESC",
    )
    return {str(kind): int(n) for kind, n in rows}


def columns(db: str, url: str, table: str) -> set[str]:
    if db == "sqlite":
        return {str(r[1]) for r in ingest.query(db, url, f"PRAGMA table_info({table})")}
    sql = f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'"
    return {str(r[0]) for r in ingest.query(db, url, sql)}


def max_id(db: str, url: str, table: str) -> int:
    return int(ingest.query(db, url, f"SELECT coalesce(max(id), 0) FROM {table}")[0][0])


STAMPS = ("received_at", "committed_at", "routed_at", "agent_notified_at", "accepted_at")


def read_messages(db: str, url: str, after: int) -> dict[tuple[str, int], dict[str, Any]]:
    """The messages this rate made, by their token: id, created_at and the stamps there are."""
    have = columns(db, url, "message")
    stamps = [c for c in STAMPS if c in have]
    sql = (
        "SELECT id, text, original_text, created_at"
        + "".join(f", {c}" for c in stamps)
        + f" FROM message WHERE id > {after}"
    )
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for row in ingest.query(db, url, sql):
        found = TOKEN.search(f"{row[1]} {row[2] or ''}")
        if not found:
            continue
        record = {"id": int(row[0]), "created_at": to_epoch(row[3])}
        for name, value in zip(stamps, row[4:], strict=True):
            record[name] = to_epoch(value)
        out[(found.group(1), int(found.group(2)))] = record
    return out


def routed_by_jobs(db: str, url: str, after: int) -> dict[int, float]:
    """message id -> when its ``routing.route`` job finished (the code without stamps)."""
    sql = (
        "SELECT payload, finished_at FROM job WHERE kind = 'routing.route' "
        f"AND id > {after} AND finished_at IS NOT NULL"
    )
    out: dict[int, float] = {}
    try:
        rows = ingest.query(db, url, sql)
    except Exception:  # a job table of another shape: no fallback
        return out
    for payload, finished in rows:
        data = payload if isinstance(payload, dict) else json.loads(payload)
        ids = data.get("message_ids") or [data.get("message_id")]
        for mid in ids:
            if mid is not None:
                out[int(mid)] = to_epoch(finished)  # type: ignore[assignment]
    return out


@dataclass
class Seen:
    """What the sandbox received, by token: when first."""

    slack: dict[int, float] = field(default_factory=dict)  # inbound shown in an agent's Slack
    telegram_team: dict[int, float] = field(default_factory=dict)  # in the Telegram team chat
    accepted: dict[int, float] = field(default_factory=dict)  # a reply at the customer's provider
    methods: dict[str, int] = field(default_factory=dict)


def _first(into: dict[int, float], n: int, at: float) -> None:
    into[n] = min(at, into.get(n, at))


def sandbox_seen(sandbox_url: str) -> Seen:
    """Read the sandbox's record of calls, then clear it. An inbound message's token in a
    Slack ``chat.postMessage`` (the agent's DM thread) is the agent notified; in a Telegram
    post to a chat that is no customer's, the team's Telegram surface; a reply's token in a
    call to the customer's provider (API receiver, Twilio, WhatsApp, Telegram to the
    customer's chat) is the reply accepted. Slack's mirror of a reply is neither."""
    import httpx

    seen = Seen()
    for call in httpx.get(f"{sandbox_url}/_sandbox/calls", timeout=300).json():
        provider, method = call["provider"], call["method"]
        key = f"{provider}.{method}"
        seen.methods[key] = seen.methods.get(key, 0) + 1
        if provider in ("libretranslate",):
            continue
        params = call["params"]
        at = float(call["at"])
        chat = str(params.get("chat_id", "")) if provider == "telegram" else ""
        customer_chat = chat.isdigit() and int(chat) >= pw.telegram_chat(0)
        for kind, number in TOKEN.findall(json.dumps(params, ensure_ascii=False)):
            n = int(number)
            if provider == "slack":
                if kind == "i" and method == "chat.postMessage":
                    _first(seen.slack, n, at)
            elif provider == "telegram" and not customer_chat:
                if kind == "i":
                    _first(seen.telegram_team, n, at)
            elif kind == "r":
                _first(seen.accepted, n, at)
    httpx.delete(f"{sandbox_url}/_sandbox/calls", timeout=60)
    return seen


def pct(values: list[float], p: float, missing: int = 0) -> float | None:
    """Nearest-rank percentile in ms; ``missing`` values count as infinitely late."""
    total = len(values) + missing
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    ordered = sorted(values)
    return round(ordered[rank - 1], 1) if rank <= len(ordered) else math.inf


def spread(values: list[float], missing: int = 0) -> dict[str, Any]:
    return {
        "count": len(values),
        "missing": missing,
        "p50_ms": pct(values, 50, missing),
        "p99_ms": pct(values, 99, missing),
        "max_ms": round(max(values), 1) if values else None,
    }


# ---------------------------------------------------------------- one target on one database


@dataclass
class Target:
    name: str  # "heliograph" or "before"
    root: Path


@dataclass
class Run:
    db: str
    target: Target
    url: str
    env: dict[str, str]
    procs: dict[str, h.Server] = field(default_factory=dict)
    serve_workers: bool = False  # PostgreSQL: serve runs workers too (its default)
    profile: Path | None = None  # --profile: serve and worker run under py-spy, output here


def demo_env(root: Path, sandbox_url: str) -> dict[str, str]:
    """The target checkout's channel settings pointed at the sandbox (as ``heliograph demo``)."""
    code = (
        "import json, sys; from channels.registry import demo_env; "
        f"print(json.dumps(demo_env({sandbox_url!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=h.child_env({}, root),
        capture_output=True,
        text=True,
    )
    if done.returncode == 0:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    from channels.registry import demo_env as here

    return here(sandbox_url)


def prepare_db(
    db: str, target: Target, world: pw.World, args: argparse.Namespace
) -> tuple[str, dict[str, Any]]:
    """A database holding the world, for this target's code; its URL and the seeding facts."""

    def migrate(url: str) -> None:
        h.run_checked(
            [*ingest.cli(target.root), "migrate"],
            {"HELIOGRAPH_DATABASE_URL": url},
            "heliograph migrate",
            root=target.root,
        )

    if db == "sqlite":
        facts = pw.build_sqlite(world, target.root, migrate, rebuild=args.rebuild)
        path = h.VAR / f"pipeline-run-{target.name}.db"
        h.remove_sqlite(path)
        with Path(facts["path"]).open("rb") as src, path.open("wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
        return f"sqlite+aiosqlite:///{path}", facts
    h.pg_drop(PG_NAME, args.pg_dsn)
    h.pg_create("pipeline", args.pg_dsn, name=PG_NAME)
    url = h.pg_url(PG_NAME, args.pg_dsn)
    started = time.perf_counter()
    migrate(url)
    facts = world.key() | pw.fill_pg(h.pg_url(PG_NAME, args.pg_dsn, "postgresql"), world)
    facts["build_seconds"] = round(time.perf_counter() - started, 1)
    return url, facts


def settle_team(db: str, url: str, world: pw.World, now: datetime) -> int:
    """Mark the shift ends of the last hours as handed off already (pipeline_world)."""
    ends = pw.recent_shift_ends(world, now)
    rows = [
        (m, end.astimezone(UTC).replace(tzinfo=None), now.replace(tzinfo=None)) for m, end in ends
    ]
    if db == "sqlite":
        import sqlite3

        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO handoff_shift_end (member_id, shift_end, done_at, handed) "
                "VALUES (?, ?, ?, 0)",
                [(m, f"{e:%Y-%m-%d %H:%M:%S.%f}", f"{d:%Y-%m-%d %H:%M:%S.%f}") for m, e, d in rows],
            )
        return len(rows)
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO handoff_shift_end (member_id, shift_end, done_at, handed) "
                "VALUES (%s, %s, %s, 0) ON CONFLICT DO NOTHING",
                rows,
            )
        conn.commit()
    finally:
        conn.close()
    return len(rows)


def detector_socket(tag: str) -> str:
    return f"/tmp/heliograph-pipeline-{os.getpid()}-{tag}.sock"  # short: a socket's path


def stop_detector(run: Run) -> float | None:
    """The shared detector's peak RSS in MiB (None: the run started none), then stop it
    (it would leave by itself when idle)."""
    pid_file = Path(run.env.get("HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET", "") + ".pid")
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    peak = h.peak_rss_mib(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return peak


def profiled(run: Run, name: str) -> list[str]:
    """With ``--profile DIR``: the prefix that runs process ``name`` under py-spy, sampling
    100 times a second the thread that holds the GIL (where its CPU goes; raw collapsed
    stacks in ``DIR/pipeline-<db>-<target>-<name>.txt``, read with ``bench/profile.py``)."""
    if run.profile is None:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    run.profile.mkdir(parents=True, exist_ok=True)
    out = run.profile / f"pipeline-{run.db}-{run.target.name}-{name}.txt"
    return [spy, "record", "--gil", "--rate", "100", "--format", "raw", "--output", str(out), "--"]


def start(run: Run, log_dir: Path) -> tuple[str, str]:
    """The sandbox, then the service (and its worker on PostgreSQL); their URLs."""
    root = run.target.root
    sandbox_port, port = h.free_port(), h.free_port()
    sandbox_url, server_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{port}"
    env = {
        **demo_env(root, sandbox_url),
        "HELIOGRAPH_DATABASE_URL": run.url,
        "HELIOGRAPH_DEMO_MODE": "1",
        "HELIOGRAPH_PUBLIC_URL": server_url,
        "HELIOGRAPH_SANDBOX_URL": sandbox_url,
        "HELIOGRAPH_TRANSLATION_PROVIDER": "libre",
        "HELIOGRAPH_TRANSLATION_URL": f"{sandbox_url}/libretranslate",
        "HELIOGRAPH_SLACK_AGENT_THREADS": "dm",
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",  # one source address sends everything
    }
    tag = f"{run.db}-{run.target.name}"
    # The machine's shared language detector (transcription/shared_detector.py), one per
    # run, so its peak RSS is this run's (code before it ignores the setting).
    env["HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET"] = detector_socket(tag)
    run.env = env
    run.procs["sandbox"] = h.start_server(
        "sandbox",
        [sys.executable, "-m", "sandbox", "--port", str(sandbox_port)],
        env,
        log_dir / f"pipeline-{tag}-sandbox.log",
        sandbox_port,
        "/_sandbox/health",
        root=root,
    )
    cli = ingest.cli(root)
    serve = [*profiled(run, "serve"), *cli, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if run.db == "sqlite":  # one process: web, workers and scheduler
        run.procs["serve"] = h.start_server(
            "serve", serve, env, log_dir / f"pipeline-{tag}-serve.log", port, "/healthz", root=root
        )
    else:  # the web process (web only unless --serve-workers), and one worker
        web_env = env | {"HELIOGRAPH_RUN_SCHEDULER": "false"}
        if not run.serve_workers:
            web_env["HELIOGRAPH_RUN_WORKERS"] = "false"
        run.procs["serve"] = h.start_server(
            "serve",
            serve,
            web_env,
            log_dir / f"pipeline-{tag}-serve.log",
            port,
            "/healthz",
            root=root,
        )
        run.procs["worker"] = h.start_process(
            "worker",
            [*profiled(run, "worker"), *cli, "worker"],
            env,
            log_dir / f"pipeline-{tag}-worker.log",
            root=root,
        )
    return sandbox_url, server_url


def replies_on_their_way(db: str, url: str, after: int) -> int:
    """Replies of this rate (message id > ``after``) not yet accepted by a provider."""
    sql = (
        "SELECT count(*) FROM message WHERE direction = 'out' AND author_type = 'agent' "
        f"AND id > {after} AND delivery_status IN ('queued', 'sending')"
    )
    return int(ingest.query(db, url, sql)[0][0])


def drain(db: str, url: str, run: Run, timeout: float, after: int) -> tuple[float, bool]:
    """Until no job is due or running and every reply of the rate has gone out. (A reply
    deferred for a second, behind an earlier one, is a job pending later: without the
    second test the rate's figures were read before it went, and it counted as lost.)"""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if not all(p.alive() for p in run.procs.values()):
            raise RuntimeError(
                "a process died:\n" + "\n".join(p.log_tail(2000) for p in run.procs.values())
            )
        b = backlog(db, url)
        if b["due_jobs"] + b["running_jobs"] == 0 and not replies_on_their_way(db, url, after):
            return time.perf_counter() - started, True
        time.sleep(0.25)
    return time.perf_counter() - started, False


def one_rate(
    run: Run,
    rate: float,
    duration: float,
    builder: Builder,
    seq0: int,
    targets: list[tuple[int, int]],
    sandbox_url: str,
    server_url: str,
    args: argparse.Namespace,
    measured: bool = True,
) -> dict[str, Any]:
    db, url = run.db, run.url
    msg_before, job_before = max_id(db, url, "message"), max_id(db, url, "job")
    rng = random.Random(f"pipeline-{rate}-{seq0}")
    reqs = schedule(rate, duration, builder, seq0, targets, rng)
    cpu0 = {name: p.cpu_seconds() for name, p in run.procs.items()}
    t_start = time.time()
    loop = fire(server_url, reqs)
    t_end = time.time()
    at_end = backlog(db, url) | {"due_by_kind": due_by_kind(db, url)}
    drain_s, drained = drain(db, url, run, args.drain_timeout, msg_before)
    cpu = {name: round(p.cpu_seconds() - cpu0[name], 2) for name, p in run.procs.items()}
    got = sandbox_seen(sandbox_url)
    notified, accepted = got.slack, got.accepted
    if not measured:
        return {}
    stored = read_messages(db, url, msg_before)
    have_stamps = any("routed_at" in r for r in stored.values())
    jobs_routed = {} if have_stamps else routed_by_jobs(db, url, job_before)

    inbound = [r for r in reqs if r.kind == "in"]
    replies = [r for r in reqs if r.kind == "reply"]
    ok_in = [r for r in inbound if 200 <= r.status < 300]
    ok_reply = [r for r in replies if 200 <= r.status < 300]
    errors = len(inbound) - len(ok_in)
    routed, notify, notify_stamps, routed_missing, notify_missing = [], [], [], 0, 0
    shown_late = 0  # not yet shown to an agent when the rate ended
    for r in ok_in:
        row = stored.get(("i", r.seq))
        seen = notified.get(r.seq)
        if seen is None:
            notify_missing += 1
            shown_late += 1
        else:
            notify.append((seen - r.sent) * 1000)  # type: ignore[operator]
            shown_late += seen > t_end
        when = None
        if row is not None and row.get("routed_at") and row.get("received_at"):
            when = (row["routed_at"] - row["received_at"]) * 1000
        elif row is not None and row["id"] in jobs_routed:
            when = (jobs_routed[row["id"]] - r.sent) * 1000  # type: ignore[operator]
        if when is None:
            routed_missing += 1
        else:
            routed.append(when)
        if row is not None and row.get("agent_notified_at") and row.get("received_at"):
            notify_stamps.append((row["agent_notified_at"] - row["received_at"]) * 1000)
    reply_ms, reply_stamps, reply_missing = [], [], 0
    for r in ok_reply:
        seen = accepted.get(r.seq)
        if seen is None:
            reply_missing += 1
        else:
            reply_ms.append((seen - r.sent) * 1000)  # type: ignore[operator]
        row = stored.get(("r", r.seq))
        if row is not None and row.get("accepted_at") and row.get("created_at"):
            reply_stamps.append((row["accepted_at"] - row["created_at"]) * 1000)
    ack = [r.latency_ms for r in inbound + replies if r.latency_ms is not None]
    lags = sorted(r.lag * 1000 for r in reqs if r.sent is not None)
    result = {
        "rate": rate,
        "duration_s": duration,
        "sent": len(inbound),
        "acknowledged": len(ok_in),
        "errors": errors,
        "statuses": _statuses(inbound),
        "new_customers": sum(r.new for r in inbound),
        "by_channel": _by_channel(inbound),
        "replies_sent": len(replies),
        "replies_acknowledged": len(ok_reply),
        "reply_statuses": _statuses(replies),
        "ack_latency": spread(ack),
        "client_lag_ms": {"p50": pct(lags, 50), "p99": pct(lags, 99)},
        "client": loop,
        "wall_s": round(t_end - t_start, 2),
        "routed": spread(routed, routed_missing)
        | {"source": "stamps" if have_stamps else "routing.route jobs' finished_at"},
        "agent_notified": spread(notify, notify_missing) | {"source": "sandbox Slack post"},
        "agent_notified_stamps": spread(notify_stamps) if notify_stamps else None,
        "reply_accepted": spread(reply_ms, reply_missing) | {"source": "sandbox provider call"},
        "reply_accepted_stamps": spread(reply_stamps) if reply_stamps else None,
        "backlog_at_end": at_end | {"not_yet_shown": shown_late},
        "drain_s": round(drain_s, 1),
        "drained": drained,
        "backlog_after_drain": backlog(db, url),
        "cpu_s": cpu,
        "sandbox_calls": got.methods,
        "telegram_team_notified": spread(
            [
                (got.telegram_team[r.seq] - r.sent) * 1000
                for r in ok_in
                if r.seq in got.telegram_team
            ]  # type: ignore[operator]
        ),
        "server_cpu_ms_per_message": round(
            sum(v for k, v in cpu.items() if k != "sandbox")
            * 1000
            / max(1, len(ok_in) + len(ok_reply)),
            1,
        ),
    }
    p99 = result["agent_notified"]["p99_ms"]
    result["held"] = bool(
        errors <= MAX_ERROR_SHARE * max(1, len(inbound))
        and p99 is not None
        and p99 < HELD_P99_MS
        and shown_late <= 2 * rate
        and drained
        and drain_s <= HELD_DRAIN_S
    )
    return result


def _statuses(reqs: list[Req]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reqs:
        out[str(r.status)] = out.get(str(r.status), 0) + 1
    return out


def _by_channel(reqs: list[Req]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reqs:
        out[r.channel] = out.get(r.channel, 0) + 1
    return out


def reply_targets(world: pw.World, now: datetime) -> list[tuple[int, int]]:
    """(conversation, its assignee) for agents on shift now, on channels that take a free
    reply at any time (API, Telegram, SMS; WhatsApp's 24-hour window is left out)."""
    on = set(pw.members_on_shift(world, now))
    out = []
    for j in range(1, world.conversations + 1):
        m = world.assignee(j)
        if m in on and pw.channel_of(j) != "whatsapp":
            out.append((j, m))
        if len(out) >= 5000:
            break
    if not out:
        raise SystemExit("nobody of the team is on shift now: no agent to reply")
    return out


def run_target(
    db: str, target: Target, world: pw.World, rates: list[float], args: argparse.Namespace
) -> dict[str, Any]:
    print(
        f"\n[{db} / {target.name}] seeding {world.members} members, "
        f"{world.conversations} conversations ({target.root}) ...",
        flush=True,
    )
    t0 = time.perf_counter()
    url, facts = prepare_db(db, target, world, args)
    print(
        f"  world ready in {time.perf_counter() - t0:.0f} s"
        f"{' (cached)' if facts.get('cached') else ''}",
        flush=True,
    )
    now = datetime.now(UTC)
    settled = settle_team(db, url, world, now)
    on_shift = pw.members_on_shift(world, now)
    targets = reply_targets(world, now)
    run = Run(db, target, url, {}, serve_workers=args.serve_workers, profile=args.profile)
    out: dict[str, Any] = {
        "database": url.rsplit("/", 1)[-1],
        "seed": {k: v for k, v in facts.items() if k != "path"},
        "members_on_shift_at_start": len(on_shift),
        "shift_ends_marked": settled,
        "reply_conversations": len(targets),
        "rates": [],
    }
    try:
        sandbox_url, server_url = start(run, h.VAR)
        builder = Builder(world, run.env, server_url)
        seq = 1
        # Warm-up, not measured: caches, connections, the first jobs.
        warm_rate = min(rates)
        print(f"  warm-up {args.warmup:.0f} s at {warm_rate:g}/s ...", flush=True)
        one_rate(
            run,
            warm_rate,
            args.warmup,
            builder,
            seq,
            targets,
            sandbox_url,
            server_url,
            args,
            measured=False,
        )
        seq += 10_000_000
        missed = 0
        for rate in rates:
            if missed and not args.all_rates:
                out["rates"].append({"rate": rate, "skipped": "a lower rate was not held"})
                print(f"  {rate:>6g}/s  skipped (a lower rate was not held)")
                continue
            print(f"  {rate:>6g}/s for {args.duration:g} s ...", end="", flush=True)
            r = one_rate(
                run, rate, args.duration, builder, seq, targets, sandbox_url, server_url, args
            )
            seq += 10_000_000
            out["rates"].append(r)
            missed += not r["held"]
            print(
                f" ack {r['acknowledged']}/{r['sent']}, notified p99 "
                f"{_ms(r['agent_notified']['p99_ms'])}, routed p99 {_ms(r['routed']['p99_ms'])}, "
                f"reply p99 {_ms(r['reply_accepted']['p99_ms'])}, "
                f"not shown at end {r['backlog_at_end']['not_yet_shown']}, "
                f"drain {r['drain_s']} s: {'held' if r['held'] else 'NOT held'}",
                flush=True,
            )
            behind = list(r["backlog_at_end"].get("due_by_kind", {}).items())[:4]
            if behind:
                print("        due at the end: " + ", ".join(f"{k} {n}" for k, n in behind))
    finally:
        out["peak_rss_mib"] = {
            name: h.peak_rss_mib(p.pid) for name, p in run.procs.items() if p.alive()
        }
        detector = stop_detector(run)
        if detector is not None:
            out["peak_rss_mib"]["language-detector"] = detector
        out["log_errors"] = {}
        for name, p in run.procs.items():
            p.stop()
            text = p.log_path.read_text(errors="replace") if p.log_path.exists() else ""
            out["log_errors"][name] = sum(
                line.startswith(("Traceback", "ERROR"))
                or '"level": "ERROR"' in line
                or " ERROR " in line
                for line in text.splitlines()
            )
        if db == "postgres" and not args.keep:
            h.pg_drop(PG_NAME, args.pg_dsn)
        if db == "sqlite" and not args.keep:
            h.remove_sqlite(h.VAR / f"pipeline-run-{target.name}.db")
    held = [r["rate"] for r in out["rates"] if r.get("held")]
    out["highest_held"] = max(held) if held else None
    return out


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == math.inf else f"{value:,.0f} ms"


# ---------------------------------------------------------------- the door


def door(db: str, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """bench/ingest.py's API measurement with workers off: acknowledged messages/s."""
    ns = argparse.Namespace(
        n=args.door_n,
        concurrency=32,
        warmup=max(100, args.door_n // 10),
        engine=args.engine,
        wrk_threads=1,
        drain_timeout=0.0,
        pg_dsn=args.pg_dsn,
        keep=False,
        no_workers=True,
        before=target.root if target.name != "heliograph" else None,
    )
    keys = ingest.Secrets.new()
    senders = max(1, ns.n // 10)
    files = {"warm": h.VAR / "pipeline-door-warm.tsv", "timed": h.VAR / "pipeline-door-timed.tsv"}
    ingest.write_requests(files["warm"], "api", "warm", ns.warmup + 32, senders, keys)
    ingest.write_requests(files["timed"], "api", "bench", ns.n + 32, senders, keys)
    name = "heliograph-no-workers" if target.name == "heliograph" else "before"
    try:
        r = ingest.run_target(name, db, ns, files, keys, "api")
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)
    return {
        "rps": r["throughput_rps"],
        "p99_ms": r["p99_ms"],
        "errors": r["errors"],
        "n": ns.n,
        "server_cpu_ms_per_request": r["server_cpu_ms_per_request"],
    }


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rates", default="50,100,200,400,800", help="messages/s, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (default 10)")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 100 members, 2,000 conversations, rates 10,20,40 for 5 s",
    )
    parser.add_argument(
        "--code",
        type=Path,
        help="another checkout (git worktree add /tmp/before <commit>), run too",
    )
    parser.add_argument("--targets", help="heliograph,before (default: both with --code)")
    parser.add_argument("--no-door", action="store_true", help="skip the door (no ratios)")
    parser.add_argument("--door-n", type=int, help="requests of the door (default 5000)")
    parser.add_argument(
        "--no-quarter", action="store_true", help="do not add a rate of a quarter of the door"
    )
    parser.add_argument(
        "--all-rates", action="store_true", help="run every rate even after one was not held"
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="the door's load generator",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached SQLite world")
    parser.add_argument("--pg-dsn", default=h.DEFAULT_PG_DSN)
    parser.add_argument("--keep", action="store_true", help="keep the run's databases")
    parser.add_argument(
        "--serve-workers",
        action="store_true",
        help="PostgreSQL: serve runs job workers too (its default), beside the worker process",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run serve (and worker) under py-spy; where their CPU went: bench/profile.py DIR",
    )
    parser.add_argument("--json", type=Path, default=h.RESULTS / "pipeline.json")
    args = parser.parse_args()
    if args.quick:
        args.members = min(args.members, 100)
        args.conversations = min(args.conversations, 2000)
        if args.rates == parser.get_default("rates"):
            args.rates = "10,20,40"
        if args.duration == parser.get_default("duration"):
            args.duration = 5.0
        args.door_n = args.door_n or 1000
        args.warmup = 2.0 if args.warmup is None else args.warmup
        args.drain_timeout = min(args.drain_timeout, 60.0)
    args.door_n = args.door_n or 5000
    args.warmup = 10.0 if args.warmup is None else args.warmup
    args.engine = args.loadgen
    if args.engine == "auto":
        import shutil

        args.engine = "wrk" if shutil.which("wrk") else "python"
    names = (args.targets or ("heliograph,before" if args.code else "heliograph")).split(",")
    if "before" in names and args.code is None:
        parser.error("the target 'before' needs --code DIR")
    args.target_list = [
        Target(n.strip(), h.ROOT if n.strip() == "heliograph" else args.code.resolve())
        for n in names
        if n.strip()
    ]
    return args


def main() -> None:
    args = parse_args()
    dbs = ingest.databases(args)
    world = pw.World(args.members, args.conversations)
    rates = sorted({float(x) for x in args.rates.split(",") if x.strip()})
    report: dict[str, Any] = {
        "benchmark": "pipeline",
        "issue": 17,
        "quick": args.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": h.machine_info()
        | ({"postgres": h.pg_server_version(args.pg_dsn)} if "postgres" in dbs else {}),
        "config": {
            "members": world.members,
            "conversations": world.conversations,
            "rates": rates,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "replies": "a tenth of the rate",
            "new_customer_share": NEW_CUSTOMER_SHARE,
            "channels": dict(pw.CHANNEL_SHARES),
            "slack_agent_threads": "dm",
            "postgres_serve_runs_workers": args.serve_workers,
            "targets": {t.name: str(t.root) for t in args.target_list},
            "door_n": args.door_n,
            "held": f"errors <= {MAX_ERROR_SHARE:.1%}, p99 received->agent-notified < "
            f"{HELD_P99_MS:.0f} ms, < 2 s of arrivals not shown at the end, the backlog "
            f"drained within {HELD_DRAIN_S:g} s",
        },
        "door": {},
        "runs": {},
    }
    print(
        f"pipeline: {world.members} members, {world.conversations} conversations, rates "
        f"{', '.join(f'{r:g}' for r in rates)}/s for {args.duration:g} s, dbs {dbs}, "
        f"load {report['machine']['loadavg_at_start']}",
        flush=True,
    )
    h.VAR.mkdir(parents=True, exist_ok=True)
    for db in dbs:
        for target in args.target_list:
            key = f"{db}/{target.name}"
            door_rps = None
            if not args.no_door:
                print(
                    f"\n[{key}] the door (bench/ingest.py, API, workers off, N={args.door_n}) ...",
                    end="",
                    flush=True,
                )
                report["door"][key] = door(db, target, args)
                door_rps = report["door"][key]["rps"]
                print(f" {door_rps:,.0f} msg/s", flush=True)
            run_rates = list(rates)
            quarter = None
            if door_rps and not args.no_quarter:
                quarter = float(round(door_rps / 4))
                if quarter not in run_rates:
                    run_rates = sorted({*run_rates, quarter})
            result = run_target(db, target, world, run_rates, args)
            result["door_rps"] = door_rps
            result["quarter_door_rate"] = quarter
            if door_rps:
                held = result["highest_held"]
                result["held_over_door"] = round(held / door_rps, 3) if held else 0.0
            report["runs"][key] = result
            report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            h.write_results("pipeline", report, args.json)  # what is done so far
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["bench_process_peak_rss_mib"] = h.self_peak_rss_mib()
    print_report(report)
    out = h.write_results("pipeline", report, args.json)
    print(f"\nwrote {out.relative_to(h.ROOT) if out.is_relative_to(h.ROOT) else out}")


def print_report(report: dict[str, Any]) -> None:
    for key, run in report["runs"].items():
        print(
            f"\n{key}: {run['seed'].get('members')} members ({run['members_on_shift_at_start']} "
            f"on shift), {run['seed'].get('conversations')} open conversations"
        )
        rows = []
        for r in run["rates"]:
            if "skipped" in r:
                rows.append([f"{r['rate']:g}", "skipped", *[None] * 11])
                continue
            rows.append(
                [
                    f"{r['rate']:g}" + ("*" if r["rate"] == run.get("quarter_door_rate") else ""),
                    r["sent"],
                    r["acknowledged"],
                    r["routed"]["p50_ms"],
                    r["routed"]["p99_ms"],
                    r["agent_notified"]["p50_ms"],
                    r["agent_notified"]["p99_ms"],
                    r["reply_accepted"]["p50_ms"],
                    r["reply_accepted"]["p99_ms"],
                    r["backlog_at_end"]["due_jobs"],
                    r["backlog_at_end"]["not_yet_shown"],
                    r["drain_s"],
                    "yes" if r["held"] else "no",
                ]
            )
        h.print_table(
            [
                "rate/s",
                "sent",
                "acked",
                "routed p50",
                "p99",
                "notified p50",
                "p99",
                "reply p50",
                "p99",
                "due jobs",
                "not shown",
                "drain s",
                "held",
            ],
            rows,
        )
        door_rps = run.get("door_rps")
        held = run["highest_held"]
        line = f"highest rate held: {held:g}/s" if held else "highest rate held: none"
        if door_rps:
            ratio = run["held_over_door"]
            verdict = "MET" if ratio >= 0.25 else "MISSED"
            line += (
                f"; the door {door_rps:,.0f} msg/s -> {ratio:.2f}x "
                f"(target >= 0.25x, stretch 0.5x): {verdict}"
            )
        print(line)
        quarter = next(
            (
                r
                for r in run["rates"]
                if r.get("rate") == run.get("quarter_door_rate") and "skipped" not in r
            ),
            None,
        )
        if quarter:
            rp, ap = quarter["routed"]["p99_ms"], quarter["reply_accepted"]["p99_ms"]
            ok = rp is not None and rp < ROUTED_P99_MS and ap is not None and ap < ACCEPTED_P99_MS
            print(
                f"at a quarter of the door ({quarter['rate']:g}/s, marked *): routed p99 {_ms(rp)} "
                f"(< 1 s), reply accepted p99 {_ms(ap)} (< 500 ms): {'MET' if ok else 'MISSED'}"
            )
        rss = ", ".join(f"{k} {v} MiB" for k, v in run["peak_rss_mib"].items())
        source = next((r["routed"]["source"] for r in run["rates"] if "routed" in r), "-")
        print(f"peak RSS: {rss}; routed from {source}")
        if any(run["log_errors"].values()):
            print(f"errors in the logs: {run['log_errors']}")
    print(
        f"bench process peak RSS {report.get('bench_process_peak_rss_mib')} MiB; load average "
        f"{report['machine']['loadavg_at_start']} at start, "
        f"{report['machine']['loadavg_at_end']} at end"
    )


if __name__ == "__main__":
    main()
