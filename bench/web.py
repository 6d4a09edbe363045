"""The web app's figures (issue #16): page render time, live fan-out, page weight, Slow 3G.

With 100,000 conversations and 1,000,000 messages in the database (bench/web_seed.py
builds them in bulk on Heliograph's migrated schema; the SQLite file is cached), it starts
a real ``heliograph serve`` (workers and scheduler on, as in production) and measures:

- render: sequential GETs, after a warm-up, of the inbox (views mine, unassigned, all;
  searches for a name, a common word and a word no message holds) and of a conversation
  (a long thread of 50 messages and a short one), signed in with a session cookie;
  target p95 < 100 ms for each page;
- live: 50 browsers' worth of ``GET /live`` SSE streams, then a signed ``POST
  /api/v1/inbound``; the time until each stream has the ``inbox`` event, repeated;
  target p99 < 1 s;
- assets: the JS and CSS the inbox and the conversation pages load (their ``<script src>``
  and ``<link rel=stylesheet>``), gzip-compressed sizes and what the server sends;
  target < 100 KB in all;
- Slow 3G: Chromium (Playwright, /usr/bin/chromium) with DevTools' "Slow 3G" preset
  through CDP ``Network.emulateNetworkConditions``: 2,000 ms latency (400 ms x 5) and
  50,000 bytes/s down and up (500 kbit/s x 0.8), the values of DevTools' legacy preset
  and Puppeteer's ``PredefinedNetworkConditions['Slow 3G']``; cold cache and a second
  visit, target < 3 s, two figures from navigation start:
  (a) usable: the first frame painted with the rows and the search form (the later of
      first contentful paint and the first animation frame in which the rows, the
      ``GET`` search form and the inline CSS are in the page): the page works from then
      on without JavaScript (links to the conversations, the plain search form);
  (b) scripted: DOMContentLoaded, when the deferred scripts ran (htmx, the keyboard
      keys, the live updates); printed beside (a), not the target.

Figures are printed with n, p50/p95/p99 and the ratio to the target, and written to
bench/results/web.json. Benchmarks measure; tests never assert on speed.

    .venv/bin/python bench/web.py                       # 100k/1M, SQLite and PostgreSQL
    .venv/bin/python bench/web.py --quick --db sqlite   # 10k/100k
    .venv/bin/python bench/web.py --conversations 50000 --messages 400000 --skip slow3g
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import harness as h
import httpx
import web_seed as seed
from itsdangerous import TimestampSigner

RENDER_TARGET_MS = 100.0
LIVE_TARGET_MS = 1000.0
ASSETS_TARGET_KB = 100.0
SLOW3G_TARGET_MS = 3000.0
SLOW3G = {  # DevTools' "Slow 3G" (legacy preset; Puppeteer's PredefinedNetworkConditions)
    "offline": False,
    "latency": 400 * 5,
    "downloadThroughput": 500 * 1000 / 8 * 0.8,
    "uploadThroughput": 500 * 1000 / 8 * 0.8,
}
CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT_S = 300
COOKIE = "heliograph_session"  # web.ui.sessions.COOKIE
MEMBER = 1  # who the benchmark signs in as (bench/web_seed.py: a lead with assignments)
FIGURES = ("render", "live", "assets", "slow3g")
WARMUP_POSTS = 2
MIN_N = 20  # requests per page at least; more until n or PAGE_SECONDS
PAGE_SECONDS = 30.0


# ---------------------------------------------------------------- the server


def session_cookie(secret: str, member_id: int = MEMBER) -> str:
    """What ``web.ui.session.start_session`` sets: Starlette's signed base64 JSON."""
    data = {"member_id": member_id, "sv": 0, "csrf": secrets.token_urlsafe(16)}
    return TimestampSigner(secret).sign(base64.b64encode(json.dumps(data).encode())).decode()


def start(url: str, keys: dict[str, str], log: Path) -> h.Server:
    port = h.free_port()
    env = {
        "HELIOGRAPH_DATABASE_URL": url,
        "HELIOGRAPH_WEB_SESSION_SECRET": keys["session"],
        "HELIOGRAPH_API_INBOUND_SECRET": keys["api"],
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",
    }
    cli = [sys.executable, "-c", "import sys; from service.cli import main; sys.exit(main())"]
    h.run_checked([*cli, "migrate"], env, "heliograph migrate")
    cmd = [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)]
    # h.start_server waits 60 s; on a busy shared machine the imports alone can take longer.
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=h.ROOT, env=h.child_env(env), stdout=out, stderr=out)
    server = h.Server("heliograph", proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"heliograph serve exited {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2.0).status_code < 500:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise TimeoutError(f"heliograph serve did not answer within {START_TIMEOUT_S} s")


def stats(values: list[float], target: float, key: str = "p95_ms") -> dict[str, Any]:
    out: dict[str, Any] = h.summarize_ms(values)
    if values:
        out["target_ms"] = target
        out["ratio_to_target"] = round(out[key] / target, 3)
        out["met"] = out[key] < target
    return out


# ---------------------------------------------------------------- render


def pages(conversations: int) -> dict[str, str]:
    longs = seed.long_conversations(conversations)
    long_id = longs[-1]
    short_id = long_id - 1  # a neighbour: 2 to about 18 messages
    prefix = seed.people.name(conversations // 2 - 7).split()[0].lower()  # a name's start
    return {
        "inbox mine": "/?view=mine",
        "inbox unassigned": "/?view=unassigned",
        "inbox all": "/?view=all",
        "inbox search name": f"/?view=all&q={prefix}",
        "inbox search word": f"/?view=all&q={seed.COMMON_WORD}",
        "inbox search no match": f"/?view=all&q={seed.RARE_WORD}",
        "conversation long": f"/conversations/{long_id}",
        "conversation short": f"/conversations/{short_id}",
    }


def _get(client: httpx.Client, path: str) -> httpx.Response | None:
    try:
        return client.get(path)
    except httpx.TransportError:
        return None


def measure_render(
    server: h.Server, cookie: str, conversations: int, n: int, warmup: int
) -> dict[str, Any]:
    base = server.url
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, cookies={COOKIE: cookie}, timeout=60) as client:
        for name, path in pages(conversations).items():
            errors = 0
            for _ in range(warmup):
                errors += _get(client, path) is None
            times: list[float] = []
            status: set[int] = set()
            size = rows = 0
            html = b""
            cpu = server.cpu_seconds()
            began = time.perf_counter()
            for i in range(n):
                if i >= MIN_N and time.perf_counter() - began > PAGE_SECONDS:
                    break  # a slow page: enough samples for its p95
                t0 = time.perf_counter()
                r = _get(client, path)
                if r is None:  # the server reset the connection: counted, not timed
                    errors += 1
                    continue
                times.append((time.perf_counter() - t0) * 1000)
                status.add(r.status_code)
                size, html = len(r.content), r.content
                rows = r.text.count('class="inbox-row"') + r.text.count('class="msg')
            out[name] = {
                "path": path,
                **stats(times, RENDER_TARGET_MS),
                # The server's CPU per request: what a busy machine disturbs far less.
                "server_cpu_ms": round((server.cpu_seconds() - cpu) * 1000 / max(1, len(times)), 2),
                "connection_errors": errors,
                "status": sorted(status),
                "html_bytes": size,
                # What gzip makes of it, and how the server sent it (httpx asks for gzip).
                "html_gzip_bytes": len(gzip.compress(html, 6)),
                "served_encoding": r.headers.get("content-encoding", "identity") if r else None,
                "rows_or_messages": rows,
            }
            if not times:  # every request failed
                nan = float("nan")
                out[name] |= {"p50_ms": nan, "p95_ms": nan, "p99_ms": nan, "ratio_to_target": nan}
            if status != {200} or errors:
                out[name]["met"] = False
            r = out[name]
            print(
                f"    {name:24} p95 {r['p95_ms']:8.1f} ms  "
                f"CPU {r['server_cpu_ms']:6.1f} ms  {path}",
                flush=True,
            )
    return out


# ---------------------------------------------------------------- live (SSE)


async def _client(
    base: str, cookie: str, seen: list[tuple[float, str]], ready: asyncio.Event
) -> None:
    async with (
        httpx.AsyncClient(base_url=base, cookies={COOKIE: cookie}, timeout=None) as client,
        client.stream("GET", "/live", headers={"Accept": "text/event-stream"}) as r,
    ):
        r.raise_for_status()
        ready.set()
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event:
                seen.append((time.perf_counter(), event))
            elif not line:
                event = ""


async def _live(
    base: str, cookie: str, api_secret: str, clients: int, rounds: int
) -> dict[str, Any]:
    seen: list[list[tuple[float, str]]] = [[] for _ in range(clients)]
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(_client(base, cookie, seen[i], readies[i])) for i in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    await asyncio.sleep(0.5)
    posted: list[float] = []
    answered: list[float] = []
    errors = 0
    tag = secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=base, timeout=120) as api:
        for i in range(-WARMUP_POSTS, rounds):  # the first posts warm the intake up: unmeasured
            body = json.dumps(
                {
                    "message_id": f"web-live-{tag}-{i}",
                    "sender": {"id": f"cust-{i + 2}", "name": seed.people.name(i + 2)},
                    "text": f"Live fan-out check {i}",
                }
            ).encode()
            sig = hmac.new(api_secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-Heliograph-Signature": f"sha256={sig}",
            }
            t0 = time.perf_counter()
            r = await api.post("/api/v1/inbound", content=body, headers=headers)
            if i >= 0:
                posted.append(t0)
                answered.append((time.perf_counter() - t0) * 1000)
                errors += r.status_code != 200
            await asyncio.sleep(1.5)  # each round's events arrive before the next post
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies: list[float] = []
    missed = 0
    for k, t0 in enumerate(posted):
        t1 = posted[k + 1] if k + 1 < len(posted) else float("inf")
        for events in seen:
            first = next((t for t, name in events if name == "inbox" and t0 <= t < t1), None)
            if first is None:
                missed += 1
            else:
                latencies.append((first - t0) * 1000)
    result = stats(latencies, LIVE_TARGET_MS, "p99_ms")
    result |= {"clients": clients, "rounds": rounds, "missed": missed, "post_errors": errors}
    result["post_answered"] = h.summarize_ms(answered)  # the POST's own answer, for scale
    if missed or errors:
        result["met"] = False
    return result


def measure_live(
    base: str, cookie: str, api_secret: str, clients: int, rounds: int
) -> dict[str, Any]:
    return asyncio.run(_live(base, cookie, api_secret, clients, rounds))


# ---------------------------------------------------------------- assets


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.found.append(("js", str(a["src"])))
        rel = (a.get("rel") or "").lower().split()
        if tag == "link" and "stylesheet" in rel and a.get("href"):
            self.found.append(("css", str(a["href"])))


def measure_assets(base: str, cookie: str, conversations: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    targets = pages(conversations)
    with httpx.Client(base_url=base, cookies={COOKIE: cookie}, timeout=30) as client:
        for page_name in ("inbox mine", "conversation long"):
            html = client.get(targets[page_name]).text
            parser = _Assets()
            parser.feed(html)
            files = []
            for kind, src in parser.found:
                url = urljoin(base + "/", src)
                with client.stream("GET", url, headers={"Accept-Encoding": "gzip, br"}) as r:
                    wire = b"".join(r.iter_raw())
                    encoding = r.headers.get("content-encoding", "identity")
                raw = gzip.decompress(wire) if encoding == "gzip" else wire
                files.append(
                    {
                        "kind": kind,
                        "src": src,
                        "status": r.status_code,
                        "bytes": len(raw),
                        "gzip_bytes": len(gzip.compress(raw, 6)),
                        "served_bytes": len(wire),
                        "served_encoding": encoding,
                    }
                )
            total_gz = sum(f["gzip_bytes"] for f in files)
            total_served = sum(f["served_bytes"] for f in files)
            out[page_name] = {
                "files": files,
                "total_bytes": sum(f["bytes"] for f in files),
                "total_gzip_kb": round(total_gz / 1000, 1),
                "total_served_kb": round(total_served / 1000, 1),
                "all_served_compressed": all(
                    f["served_encoding"] != "identity" for f in files if f["bytes"] > 500
                ),
                "target_kb": ASSETS_TARGET_KB,
                "ratio_to_target": round(total_gz / 1000 / ASSETS_TARGET_KB, 3),
                "met": total_gz / 1000 < ASSETS_TARGET_KB
                and all(f["status"] == 200 for f in files),
            }
    return out


# ---------------------------------------------------------------- Slow 3G


# Before any of the page's own scripts (an init script: the page's CSP does not apply):
# the time of the first animation frame whose paint holds the rows, the search form (a
# plain GET form) and a stylesheet; the frame paints right after its callbacks.
ROWS_FRAME_JS = """(() => {
  const look = (t) => {
    const ready = document.querySelector('.inbox-row')
      && document.querySelector('form[method="get"] #inbox-q')
      && document.styleSheets.length > 0;
    if (ready) { window.__rowsFrame = t; } else { requestAnimationFrame(look); }
  };
  requestAnimationFrame(look);
})();"""

USABLE_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {
    now: performance.now(),
    rows_frame: window.__rowsFrame ?? null,
    htmx: typeof htmx === 'object',
    response_end: nav ? nav.responseEnd : null,
    dom_content_loaded: nav ? nav.domContentLoadedEventEnd : null,
    load: nav ? nav.loadEventEnd : null,
    fcp: fcp ? fcp.startTime : null,
    html_transfer_bytes: nav ? nav.transferSize : null,
  };
}"""


async def _slow3g(base: str, cookie: str, runs: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    samples: list[dict[str, Any]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            for i in range(runs):
                context = await browser.new_context()
                await context.add_init_script(ROWS_FRAME_JS)
                await context.add_cookies([{"name": COOKIE, "value": cookie, "url": base}])
                page = await context.new_page()
                cdp = await context.new_cdp_session(page)
                await cdp.send("Network.enable")
                await cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
                await cdp.send("Network.emulateNetworkConditions", SLOW3G)
                for visit in ("cold", "second visit"):
                    await page.goto(base + "/?view=mine", wait_until="commit", timeout=120_000)
                    await page.wait_for_selector(".inbox-row", timeout=120_000)
                    await page.wait_for_function(
                        "() => document.readyState !== 'loading' && "
                        "performance.getEntriesByName('first-contentful-paint').length > 0 && "
                        "performance.getEntriesByType('navigation')[0]"
                        ".domContentLoadedEventEnd > 0 && window.__rowsFrame != null",
                        timeout=120_000,
                    )
                    await page.focus("#inbox-q")
                    focused = await page.evaluate("document.activeElement.id === 'inbox-q'")
                    marks = await page.evaluate(USABLE_JS)
                    usable = max(marks["fcp"], marks["rows_frame"])  # (a)
                    scripted = marks["dom_content_loaded"]  # (b)
                    samples.append(
                        {"run": i, "visit": visit, "usable_ms": usable, "scripted_ms": scripted}
                        | marks
                    )
                    samples[-1]["search_focused"] = focused
                await context.close()
        finally:
            await browser.close()
    out: dict[str, Any] = {"network": SLOW3G, "runs": runs, "samples": samples}
    for visit in ("cold", "second visit"):
        values = [s["usable_ms"] for s in samples if s["visit"] == visit]
        scripted = sorted(s["scripted_ms"] for s in samples if s["visit"] == visit)
        out[visit] = stats(values, SLOW3G_TARGET_MS, "p50_ms") | {
            "scripted_p50_ms": h.percentile(scripted, 50),
            "scripted_met": h.percentile(scripted, 50) < SLOW3G_TARGET_MS,
            "html_transfer_bytes": max(
                s["html_transfer_bytes"] or 0 for s in samples if s["visit"] == visit
            ),
            "fcp_p50_ms": h.percentile(
                sorted(s["fcp"] for s in samples if s["visit"] == visit), 50
            ),
            "response_end_p50_ms": h.percentile(
                sorted(s["response_end"] for s in samples if s["visit"] == visit), 50
            ),
        }
    out["met"] = out["cold"].get("met", False)
    return out


def measure_slow3g(base: str, cookie: str, runs: int) -> dict[str, Any]:
    return asyncio.run(_slow3g(base, cookie, runs))


# ---------------------------------------------------------------- the run


def prepare(db: str, args: argparse.Namespace) -> tuple[str, dict[str, Any], str | None]:
    """(database URL, seeding facts, the PG database to drop)."""
    if db == "sqlite":
        built = seed.build_sqlite(args.conversations, args.messages, args.rebuild)
        path = seed.working_copy(Path(built["path"]), "web-run.db")
        return f"sqlite+aiosqlite:///{path}", built, None
    built = seed.build_pg(args.conversations, args.messages, args.pg_dsn)
    return str(built.pop("url")), built, str(built["database"])


def run_db(db: str, args: argparse.Namespace, wanted: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    url, built, pg_name = prepare(db, args)
    print(f"  {db}: seeded in {time.perf_counter() - t0:.1f} s (cached: {built['cached']})")
    keys = {"session": secrets.token_urlsafe(32), "api": secrets.token_hex(32)}
    cookie = session_cookie(keys["session"])
    server = None
    result: dict[str, Any] = {"seed": built}
    try:
        server = start(url, keys, h.VAR / f"web-{db}.log")
        if "render" in wanted:
            print(f"  {db}: render, n={args.n} per page after {args.warmup} warm-up")
            cpu = server.cpu_seconds()
            result["render"] = measure_render(
                server, cookie, args.conversations, args.n, args.warmup
            )
            result["render_server_cpu_s"] = round(server.cpu_seconds() - cpu, 2)
        if "live" in wanted:
            print(f"  {db}: live, {args.clients} SSE clients x {args.rounds} messages")
            result["live"] = measure_live(
                server.url, cookie, keys["api"], args.clients, args.rounds
            )
        if "assets" in wanted and db == args.dbs[0]:
            result["assets"] = measure_assets(server.url, cookie, args.conversations)
        if "slow3g" in wanted and db == args.dbs[0]:
            print(f"  {db}: Slow 3G, {args.browser_runs} cold visits and their second visit")
            result["slow3g"] = measure_slow3g(server.url, cookie, args.browser_runs)
        if not server.alive():
            raise RuntimeError(f"the server died:\n{server.log_tail()}")
        log = server.log_path.read_text(errors="replace").splitlines()
        result["server_log_errors"] = sum('"level": "ERROR"' in line for line in log)
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
            h.remove_sqlite(h.VAR / "web-run.db")  # the run's copy; the seeded cache stays
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="10,000 / 100,000, fewer requests")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--n", type=int, default=60, help="measured requests per page")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50, help="SSE clients")
    parser.add_argument("--rounds", type=int, default=20, help="messages posted to them")
    parser.add_argument("--browser-runs", type=int, default=5)
    parser.add_argument("--skip", default="", help=f"comma-separated, of {', '.join(FIGURES)}")
    parser.add_argument("--rebuild", action="store_true", help="re-seed the cached SQLite file")
    parser.add_argument("--pg-dsn", default=h.DEFAULT_PG_DSN)
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL database and the SQLite copy"
    )
    parser.add_argument("--out", type=Path, help="default bench/results/web.json")
    args = parser.parse_args()
    if args.quick:
        args.conversations, args.messages = 10_000, 100_000
        args.n, args.rounds, args.browser_runs = min(args.n, 30), min(args.rounds, 10), 2
    args.dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in args.dbs and not h.pg_available(args.pg_dsn):
        if args.db == "postgres":
            raise SystemExit(f"PostgreSQL is not reachable at {args.pg_dsn}")
        print(f"PostgreSQL is not reachable at {args.pg_dsn}: skipping it", file=sys.stderr)
        args.dbs.remove("postgres")
    return args


def main() -> None:
    args = parse_args()
    wanted = [f for f in FIGURES if f not in {s.strip() for s in args.skip.split(",")}]
    report: dict[str, Any] = {
        "benchmark": "web",
        "quick": args.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": h.machine_info(),
        "config": {
            "conversations": args.conversations,
            "messages": args.messages,
            "customers": seed.customers_for(args.conversations),
            "team_members": seed.MEMBERS,
            "requests_per_page": args.n,
            "warmup_per_page": args.warmup,
            "sse_clients": args.clients,
            "sse_rounds": args.rounds,
            "browser_runs": args.browser_runs,
            "server": "heliograph serve: uvicorn, one process, workers and scheduler on",
            "client": "httpx on the same machine, sequential requests",
        },
        "runs": {},
    }
    if "postgres" in args.dbs:
        report["machine"]["postgres"] = h.pg_server_version(args.pg_dsn)
    m = report["machine"]
    print(
        f"web: {args.conversations:,} conversations, {args.messages:,} messages, "
        f"dbs={','.join(args.dbs)} cores={m['cores']} load={m['loadavg_at_start']}"
    )
    for db in args.dbs:
        report["runs"][db] = run_db(db, args, wanted)
    m["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = verdicts(report)
    print_report(report)
    out = h.write_results("web", report, args.out)
    print(f"\nwrote {out.relative_to(h.ROOT) if out.is_relative_to(h.ROOT) else out}")


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for db, run in report["runs"].items():
        if "render" in run:
            worst = max(run["render"].values(), key=lambda r: r.get("p95_ms", 0))
            out[f"{db} render p95 < 100 ms"] = {
                "worst_page_p95_ms": worst.get("p95_ms"),
                "worst_page": worst["path"],
                "met": all(r.get("met") for r in run["render"].values()),
            }
        if "live" in run:
            out[f"{db} live p99 < 1 s"] = {
                "p99_ms": run["live"].get("p99_ms"),
                "met": run["live"].get("met", False),
            }
        if "assets" in run:
            out["assets < 100 KB gzip"] = {
                page: {"total_gzip_kb": a["total_gzip_kb"], "met": a["met"]}
                for page, a in run["assets"].items()
            }
        if "slow3g" in run:
            cold, second = run["slow3g"]["cold"], run["slow3g"]["second visit"]
            out["slow3g usable (rows and search form painted) < 3 s"] = {
                "cold_p50_ms": cold.get("p50_ms"),
                "second_visit_p50_ms": second.get("p50_ms"),
                "met": run["slow3g"]["met"] and second.get("met", False),
            }
            out["slow3g scripted (DOMContentLoaded) < 3 s, not the target"] = {
                "cold_p50_ms": cold.get("scripted_p50_ms"),
                "second_visit_p50_ms": second.get("scripted_p50_ms"),
                "met": cold.get("scripted_met", False) and second.get("scripted_met", False),
            }
    return out


def print_report(report: dict[str, Any]) -> None:
    for db, run in report["runs"].items():
        if "render" in run:
            print(f"\n{db}: server-side render (target p95 < {RENDER_TARGET_MS:.0f} ms)")
            rows = [
                [
                    *[name, r["count"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["server_cpu_ms"]],
                    *[f"{r['ratio_to_target']:.2f}x", "MET" if r["met"] else "MISSED"],
                ]
                for name, r in run["render"].items()
            ]
            headers = ["page", "n", "p50 ms", "p95 ms", "p99 ms", "server CPU ms/req"]
            h.print_table([*headers, "p95/target", ""], rows)
        if "live" in run:
            r = run["live"]
            print(
                f"\n{db}: live fan-out to {r['clients']} SSE clients, n={r.get('count', 0)}: "
                f"p50 {r.get('p50_ms', 0):.1f} ms, p95 {r.get('p95_ms', 0):.1f} ms, "
                f"p99 {r.get('p99_ms', 0):.1f} ms ({r.get('ratio_to_target', 0):.2f}x of "
                f"{LIVE_TARGET_MS:.0f} ms), missed {r['missed']}: "
                + ("MET" if r.get("met") else "MISSED")
            )
        for page, a in run.get("assets", {}).items():
            print(
                f"\nassets of {page}: {len(a['files'])} files, {a['total_bytes'] / 1000:.1f} KB, "
                f"{a['total_gzip_kb']:.1f} KB gzip ({a['ratio_to_target']:.2f}x of "
                f"{ASSETS_TARGET_KB:.0f} KB), served {a['total_served_kb']:.1f} KB "
                f"({'compressed' if a['all_served_compressed'] else 'NOT all compressed'}): "
                + ("MET" if a["met"] else "MISSED")
            )
        if "slow3g" in run:
            s = run["slow3g"]
            net = s["network"]
            print(
                f"\nSlow 3G ({net['latency']:.0f} ms latency, "
                f"{net['downloadThroughput']:,.0f} B/s): inbox usable (target "
                f"{SLOW3G_TARGET_MS:.0f} ms)"
            )
            for visit in ("cold", "second visit"):
                v = s[visit]
                print(
                    f"  {visit:12} n={v['count']} (a) usable p50 {v['p50_ms']:.0f} ms, max "
                    f"{v['max_ms']:.0f} ms ({v['ratio_to_target']:.2f}x): "
                    + ("MET" if v["met"] else "MISSED")
                    + f"; (b) scripted p50 {v['scripted_p50_ms']:.0f} ms: "
                    + ("MET" if v["scripted_met"] else "MISSED")
                    + f"; HTML done {v['response_end_p50_ms']:.0f} ms "
                    f"({v['html_transfer_bytes']:,} B), first paint {v['fcp_p50_ms']:.0f} ms"
                )
        if run.get("server_log_errors"):
            print(f"{db}: {run['server_log_errors']} errors in the server log")
    m = report["machine"]
    print(f"\nload average: {m['loadavg_at_start']} at start, {m['loadavg_at_end']} at end")


if __name__ == "__main__":
    main()
