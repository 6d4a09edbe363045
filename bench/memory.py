"""Process memory (#17): the RSS of one ``heliograph serve`` process, idle and at its peak.

For each variant it starts a real ``heliograph serve`` (workers and scheduler on, as in
production) on a freshly migrated SQLite file and a free port, waits until ``/healthz``
answers, reads the process's RSS, then posts signed inbound messages through the API
channel (``POST /api/v1/inbound``), one or two in each of the demo's languages, waits
until the workers have run every job they queued (language detection among them), lets
it settle and reads the RSS again (idle after detection) and the peak (``VmHWM``). The
variants differ in ``HELIOGRAPH_LANGUAGE_CANDIDATES`` and ``HELIOGRAPH_LANGUAGE_DETECTOR``:

- ``all``: every language lingua knows (the old behaviour of ``[]``; now ``all``);
- ``previous-default``: the 21 languages that were the default before #17;
- ``default``: what the service now uses when nothing is set: the default candidates,
  detected by the machine's shared detector process (``transcription.shared_detector``),
  whose RSS is read too (its pid file beside its socket);
- ``default-in-process``: the default candidates, lingua in the serve process itself.

The first two run in-process, as they were measured before the shared detector.

Target (issue #17): under 300 MB RSS with the demo's languages.

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --variants default --out /tmp/memory.json

RSS comes from psutil where installed, else from /proc/PID/status (VmRSS, VmHWM).
"""

# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness as h
import httpx

TARGET_MB = 300.0
PREVIOUS_DEFAULT = "en es pt fr de it nl ru uk pl tr ar hi zh ja ko ms id vi th sv".split()
# name: (HELIOGRAPH_LANGUAGE_CANDIDATES, HELIOGRAPH_LANGUAGE_DETECTOR); None = unset
VARIANTS: dict[str, tuple[str | None, str | None]] = {
    "all": ("all", "in_process"),
    "previous-default": (json.dumps(PREVIOUS_DEFAULT), "in_process"),
    "default": (None, None),
    "default-in-process": (None, "in_process"),
}
# Support messages in the demo's languages (service/demo.py's customers and the team in
# service/demo_data/team.yaml), each long enough for lingua to score every candidate.
MESSAGES = (
    "Hi, I was charged twice for the Mindful Mornings course, can you check?",
    "Hola, no puedo entrar a mi curso desde ayer, ¿me pueden ayudar?",
    "Olá, não consigo acessar a aula de hoje, o link não funciona.",
    "Bonjour, je n'arrive pas à télécharger le cahier de la leçon 4.",
    "Hallo, ich wurde für den Kurs zweimal belastet, bitte prüfen Sie das.",
    "Здравствуйте, не могу войти в личный кабинет после обновления.",
    "Добрий день, я не можу знайти запис вчорашнього заняття.",
    "Hai, saya tak boleh log masuk ke akaun saya sejak semalam.",
    "你好，我的课程付款被扣了两次，请帮我查一下。",
    "こんにちは、昨日からアプリにログインできません。",
    "안녕하세요, 어제부터 앱에 로그인할 수 없어요.",
)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a live process, in MB (10^6 bytes)."""
    try:
        import psutil  # type: ignore[import-untyped]

        info = psutil.Process(pid).memory_info()
        peak = getattr(info, "peak_wset", None)  # Windows; Linux reads VmHWM below
        if peak is not None:
            return info.rss / 1e6, peak / 1e6
    except ImportError:
        pass
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024 / 1e6
    return fields["VmRSS"], fields["VmHWM"]


def runnable_jobs(db: Path) -> int:
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}"
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM job WHERE status = 'running' "
            "OR (status = 'pending' AND run_at <= ?)",
            (now,),
        ).fetchone()
    return int(row[0])


def detections(db: Path) -> dict[str, int]:
    """What the workers decided: the detected language of each inbound message."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT coalesce(original_language, '?'), count(*) FROM message "
            "WHERE direction = 'in' GROUP BY 1"
        ).fetchall()
    return {str(lang): int(n) for lang, n in rows}


def post(client: httpx.Client, url: str, secret: str, i: int, text: str) -> None:
    body = json.dumps(
        {
            "message_id": f"mem-{i:04d}",
            "sender": {"id": f"mem-sender-{i}", "name": f"Customer {i}"},
            "text": text,
        },
        separators=(",", ":"),
    ).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        url + "/api/v1/inbound",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Heliograph-Signature": f"sha256={signature}",
        },
    )
    response.raise_for_status()


def cli() -> list[str]:
    return [sys.executable, "-c", "import sys; from service.cli import main; sys.exit(main())"]


def measure(
    name: str, variant: tuple[str | None, str | None], rounds: int, settle_s: float
) -> dict[str, Any]:
    candidates, detector = variant
    socket_path = Path(f"/tmp/heliograph-memory-{name}.sock")  # short: a socket path
    db = h.VAR / f"memory-{name}.db"
    h.remove_sqlite(db)
    log = h.VAR / f"memory-{name}.log"
    secret = secrets.token_hex(32)
    env = {
        "HELIOGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "HELIOGRAPH_API_INBOUND_SECRET": secret,
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",
        "HELIOGRAPH_RUN_WORKERS": "true",
        "HELIOGRAPH_RUN_SCHEDULER": "true",
    }
    if candidates is not None:
        env["HELIOGRAPH_LANGUAGE_CANDIDATES"] = candidates
    if detector is not None:
        env["HELIOGRAPH_LANGUAGE_DETECTOR"] = detector
    env["HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET"] = str(socket_path)
    h.run_checked([*cli(), "migrate"], env, "heliograph migrate")
    port = h.free_port()
    cmd = [*cli(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = h.start_server(f"serve-{name}", cmd, env, log, port, "/healthz")
    try:
        time.sleep(settle_s)
        started_rss, _ = rss_mb(server.proc.pid)
        sent = 0
        with httpx.Client(timeout=30.0) as client:
            for _ in range(rounds):
                for text in MESSAGES:
                    post(client, server.url, secret, sent, text)
                    sent += 1
        deadline = time.monotonic() + 120
        while runnable_jobs(db) and time.monotonic() < deadline and server.alive():
            time.sleep(0.2)
        drained = runnable_jobs(db) == 0
        time.sleep(settle_s)
        idle_rss, peak_rss = rss_mb(server.proc.pid)
        pid_file = Path(f"{socket_path}.pid")
        detector_pid = int(pid_file.read_text()) if pid_file.exists() else None
        detector_rss, detector_peak = rss_mb(detector_pid) if detector_pid else (0.0, 0.0)
        if not server.alive():
            raise RuntimeError(f"{name}: the server died:\n{server.log_tail()}")
        return {
            "candidates": candidates if candidates is not None else "(unset: the default)",
            "detector": detector or "(unset: shared)",
            "messages": sent,
            "jobs_drained": drained,
            "detected": detections(db),
            "rss_started_mb": round(started_rss, 1),
            "rss_idle_after_detection_mb": round(idle_rss, 1),
            "rss_peak_mb": round(peak_rss, 1),
            "detector_rss_mb": round(detector_rss, 1),
            "detector_peak_mb": round(detector_peak, 1),
            "total_peak_mb": round(peak_rss + detector_peak, 1),
            "target_met": max(peak_rss, detector_peak) < TARGET_MB,
        }
    except Exception:
        print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        server.stop()
        h.remove_sqlite(db)
        stop_detector(socket_path)


def stop_detector(socket_path: Path) -> None:
    """The shared detector outlives the server (it leaves when idle): stop it now."""
    pid_file = Path(f"{socket_path}.pid")
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}"
    )
    parser.add_argument("--rounds", type=int, default=2, help="times each message is sent")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before each reading")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    report: dict[str, Any] = {"machine": h.machine_info(), "target_mb": TARGET_MB, "runs": {}}
    for name in args.variants.split(","):
        report["runs"][name] = measure(name, VARIANTS[name], args.rounds, args.settle)
    rows = [
        [
            name,
            r["candidates"][:24],
            r["detector"],
            r["rss_started_mb"],
            r["rss_idle_after_detection_mb"],
            r["rss_peak_mb"],
            r["detector_peak_mb"] or "-",
            r["total_peak_mb"],
            "yes" if r["target_met"] else "no",
        ]
        for name, r in report["runs"].items()
    ]
    h.print_table(
        [
            "variant",
            "candidates",
            "detector",
            "serve RSS started MB",
            "serve RSS idle after MB",
            "serve peak MB",
            "detector peak MB",
            "sum of peaks MB",
            "each < 300",
        ],
        rows,
    )
    for name, r in report["runs"].items():
        print(f"{name}: detected {r['detected']}, jobs drained: {r['jobs_drained']}")
    print(f"written to {h.write_results('memory', report, args.out)}")


if __name__ == "__main__":
    main()
