"""Shared pieces of the benchmarks: processes, PostgreSQL databases, statistics, output.

Benchmarks are scripts (``.venv/bin/python bench/<name>.py``), not tests; this module sits
beside them and is imported by file name, before anything from the product.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VAR = ROOT / "var" / "bench"
BIN = Path(sys.executable).parent
# A script run as ``python bench/x.py`` has bench/ as sys.path[0], where bench/routing.py
# would shadow the ``routing`` package: look in the repository root first.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))
DEFAULT_PG_DSN = os.environ.get(
    "HELIOGRAPH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (no interpolation)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return float(sorted_values[rank - 1])


def summarize_ms(latencies_ms: Sequence[float]) -> dict[str, float]:
    values = sorted(latencies_ms)
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean_ms": round(sum(values) / len(values), 3),
        "p50_ms": round(percentile(values, 50), 3),
        "p95_ms": round(percentile(values, 95), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(values[-1], 3),
    }


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What the figures were measured on; the load average says how busy it was."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "memory_gib": mem_gib,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (0.0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str], root: Path = ROOT) -> dict[str, str]:
    """The caller's environment without any HELIOGRAPH_* setting, plus ``extra``; the code
    of the checkout at ``root`` first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOGRAPH_")}
    env.update({"PYTHONUNBUFFERED": "1", "HELIOGRAPH_LOG_LEVEL": "WARNING"})
    # Run the working tree, even packages added since the editable install was made.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The process measured: ``proc``, or the program it runs under a profiler."""
        args = self.proc.args
        if isinstance(args, list) and args and Path(str(args[0])).name == "py-spy":
            try:
                children = psutil.Process(self.proc.pid).children()
            except psutil.NoSuchProcess:
                children = []
            if children:
                return int(children[0].pid)
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            pid = self.pid
            if pid != self.proc.pid:  # under py-spy: stop the program, py-spy then writes
                os.kill(pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def start_server(
    name: str,
    cmd: list[str],
    env: Mapping[str, str],
    log_path: Path,
    port: int,
    health: str,
    root: Path = ROOT,
) -> Server:
    """Start ``cmd`` (in the checkout at ``root``) and wait until ``health`` answers below 500."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=child_env(env, root), stdout=log, stderr=log)
    server = Server(name, proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + health, timeout=2.0).status_code < 500:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise TimeoutError(f"{name} did not answer {health} within 60 s:\n{server.log_tail()}")


def run_checked(cmd: list[str], env: Mapping[str, str], what: str, root: Path = ROOT) -> None:
    done = subprocess.run(cmd, cwd=root, env=child_env(env, root), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")


# ---------------------------------------------------------------- PostgreSQL


def pg_available(dsn: str = DEFAULT_PG_DSN) -> bool:
    import psycopg2  # type: ignore[import-untyped]

    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def pg_admin(dsn: str, sql: str) -> None:
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def pg_database_exists(name: str, dsn: str = DEFAULT_PG_DSN) -> bool:
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def pg_create(prefix: str, dsn: str = DEFAULT_PG_DSN, name: str | None = None) -> str:
    """Create a database (``hg_bench_<prefix>_<random>`` unless ``name``); returns its name."""
    name = name or f"hg_bench_{prefix}_{uuid.uuid4().hex[:8]}"
    pg_admin(dsn, f'CREATE DATABASE "{name}"')
    return name


def pg_drop(name: str, dsn: str = DEFAULT_PG_DSN) -> None:
    pg_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(name: str, dsn: str = DEFAULT_PG_DSN, driver: str = "postgresql+asyncpg") -> str:
    """The SQLAlchemy URL of database ``name`` on the server of ``dsn``."""
    base = dsn.rsplit("/", 1)[0].split("://", 1)[1]
    return f"{driver}://{base}/{name}"


def pg_server_version(dsn: str = DEFAULT_PG_DSN) -> str:
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def sqlite_files(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]


def remove_sqlite(path: Path) -> None:
    for item in sqlite_files(path):
        item.unlink(missing_ok=True)


def seeded_sqlite(
    path: Path,
    wanted: Mapping[str, Any],
    migrate: Callable[[str], None],
    fill: Callable[[sqlite3.Connection], Mapping[str, Any]],
    *,
    rebuild: bool = False,
    migrate_cached: bool = False,
    analyze: bool = False,
) -> dict[str, Any]:
    """A seeded SQLite file kept under VAR between runs, its facts in ``<path>.json``.

    Reused when those facts hold ``wanted`` (``migrate_cached``: new migrations are applied
    to it first); else built on a ``.building`` copy: ``migrate(url)``, then ``fill(conn)``
    in one transaction with the journal off (what it returns joins the facts), ANALYZE if
    asked, WAL as Heliograph runs it, and renamed into place. Returns the facts, the path,
    whether it was cached and the file's size."""
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists() and not rebuild:
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == dict(wanted):
            if migrate_cached:
                migrate(f"sqlite+aiosqlite:///{path}")
            return {"path": str(path), "cached": True, **meta, **_file_mib(path)}
    VAR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".building.db")
    remove_sqlite(tmp)
    started = time.perf_counter()
    migrate(f"sqlite+aiosqlite:///{tmp}")
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while the indexes grow
        conn.execute("BEGIN")
        facts = dict(fill(conn))
        conn.execute("COMMIT")
        if analyze:
            conn.execute("ANALYZE")
        conn.execute("PRAGMA journal_mode=WAL")  # what Heliograph runs with
    finally:
        conn.close()
    remove_sqlite(path)
    tmp.rename(path)
    meta = {**wanted, "build_seconds": round(time.perf_counter() - started, 1), **facts}
    meta_path.write_text(json.dumps(meta) + "\n")
    return {"path": str(path), "cached": False, **meta, **_file_mib(path)}


def _file_mib(path: Path) -> dict[str, float]:
    return {"file_mib": round(path.stat().st_size / 2**20, 1)}


# ---------------------------------------------------------------- output


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "-" if value is None else str(value)


def write_results(name: str, data: Mapping[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- processes, more (issue #17)


def start_process(
    name: str, cmd: list[str], env: Mapping[str, str], log_path: Path, root: Path = ROOT
) -> Server:
    """Start ``cmd`` with no port to wait on (e.g. ``heliograph worker``); fails if it exits
    within a second."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=child_env(env, root), stdout=log, stderr=log)
    server = Server(name, proc, "", log_path)
    time.sleep(1.0)
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{server.log_tail()}")
    return server


def peak_rss_mib(pid: int) -> float | None:
    """A live process's peak resident set size (VmHWM), in MiB; None where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def self_peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
