"""Load generator for bench/ingest.py, run as its own process: COUNT requests at concurrency C.

Reads pre-signed requests (one per line, ``<headers>\\t<body>``, the headers as
``Name: value`` pairs joined by ASCII unit separators, \\x1f) prepared before the
clock starts, fires the first COUNT of them over C keep-alive connections, each connection
sending its next request as soon as the previous answer arrived (a closed loop), and
prints one JSON object: throughput, latency percentiles, errors and its own CPU time.

Engines:
- ``wrk`` (default when installed): the C load generator, driven by bench/wrk_inbound.lua.
  It needs a few microseconds of CPU per request, so on a small machine it leaves the
  cores to the server under test.
- ``python``: asyncio + uvloop writing pre-built HTTP/1.1 requests on raw sockets (no HTTP
  client library in the loop). Several times cheaper than httpx, dearer than wrk.

    python bench/loadgen.py http://127.0.0.1:8000/api/v1/inbound requests.tsv --count 5000 -c 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk_inbound.lua"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _percentile(values: list[float], pct: float) -> float:
    import math

    if not values:
        return float("nan")
    return values[max(1, min(len(values), math.ceil(pct / 100 * len(values)))) - 1]


# ---------------------------------------------------------------- wrk


def run_wrk(url: str, path: Path, count: int, concurrency: int, threads: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --engine python")
    threads = max(1, min(threads, concurrency))
    # -d is only a safety net: every thread stops itself after its share of responses.
    duration = max(120, count // 20)
    cmd = [wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{duration}s"]
    cmd += ["--timeout", "30s", "-s", str(LUA), url, "--", str(path), str(count), str(threads)]
    before = _cpu(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    finished, lines = 0, []
    for text in proc.stdout:
        lines.append(text)
        if text.startswith("WRKDONE"):
            finished += 1
            if finished == threads:
                # wrk's main thread sleeps for all of -d; SIGINT ends it and its clock now.
                proc.send_signal(signal.SIGINT)
    stderr = proc.stderr.read() if proc.stderr else ""
    returncode = proc.wait(timeout=60)
    cpu = _cpu(resource.RUSAGE_CHILDREN) - before
    line = next((x for x in lines if x.startswith("WRKJSON ")), None)
    if returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({returncode}):\n{''.join(lines)}\n{stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = raw["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    return {
        "engine": "wrk",
        "threads": threads,
        "completed": raw["completed"],
        "ok": raw["completed"] - raw["non_2xx"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": socket_errors,
        "errors_detail": errors,
        "duration_s": round(seconds, 3),
        "throughput_rps": round(raw["completed"] / seconds, 1) if seconds else 0.0,
        "latency_ms": {k: round(v / 1000, 3) for k, v in lat.items()},
        "client_cpu_s": round(cpu, 3),
    }


# ---------------------------------------------------------------- python


def request_headers(field: str) -> list[tuple[str, str]]:
    """The headers of one request line: ``Name: value`` pairs joined by \\x1f."""
    pairs = []
    for pair in field.split("\x1f"):
        name, _, value = pair.partition(": ")
        pairs.append((name, value))
    return pairs


def _build_requests(url: str, path: Path) -> list[bytes]:
    parts = urlsplit(url)
    head = f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        field, body = line.split("\t", 1)
        data = body.encode()
        headers = "".join(f"{name}: {value}\r\n" for name, value in request_headers(field))
        out.append(f"{head}{headers}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns (status, server wants the connection closed)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    start = lower.find(b"content-length:")
    if start < 0:
        raise RuntimeError("response without Content-Length")
    end = lower.find(b"\r\n", start)
    await reader.readexactly(int(lower[start + 15 : end]))
    return status, b"connection: close" in lower


async def _python_main(url: str, requests: list[bytes], count: int, concurrency: int) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    socket_errors = 0
    cursor = iter(range(count))

    async def connection() -> None:
        nonlocal socket_errors
        reader, writer = await asyncio.open_connection(host, port)
        for index in cursor:
            started = time.perf_counter()
            try:
                writer.write(requests[index])
                status, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                socket_errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        writer.close()

    cpu_before = _cpu(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    cpu = _cpu(resource.RUSAGE_SELF) - cpu_before
    latencies.sort()
    non_2xx = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    return {
        "engine": "python",
        "completed": len(latencies),
        "ok": len(latencies) - non_2xx,
        "non_2xx": non_2xx,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "socket_errors": socket_errors,
        "duration_s": round(seconds, 3),
        "throughput_rps": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "latency_ms": {
            "mean": round(sum(latencies) / max(1, len(latencies)), 3),
            "p50": round(_percentile(latencies, 50), 3),
            "p90": round(_percentile(latencies, 90), 3),
            "p99": round(_percentile(latencies, 99), 3),
            "max": round(latencies[-1], 3) if latencies else float("nan"),
        },
        "client_cpu_s": round(cpu, 3),
    }


def run_python(url: str, path: Path, count: int, concurrency: int) -> dict[str, Any]:
    requests = _build_requests(url, path)  # built before the clock starts
    if len(requests) < count:
        raise SystemExit(f"{path} has {len(requests)} requests, fewer than --count {count}")
    factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_python_main(url, requests, count, concurrency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("requests", type=Path, help="file of '<headers>\\t<body>' lines")
    parser.add_argument("--count", type=int, required=True, help="requests to measure")
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("--engine", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    args = parser.parse_args()
    if args.engine == "wrk":
        result = run_wrk(args.url, args.requests, args.count, args.concurrency, args.threads)
    else:
        result = run_python(args.url, args.requests, args.count, args.concurrency)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
