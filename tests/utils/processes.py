"""Run Heliograph (and helpers) as real separate processes on free local ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listens_on(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether ``proc`` (or a process it started) is the one listening on ``port``.

    ``free_port`` closes its socket before the server binds the port, so another test
    worker's server can take it meanwhile; its answer must not pass for ours (CI once saw
    a sandbox "ready" whose first request reached a server shutting down elsewhere)."""
    try:
        parent = psutil.Process(proc.pid)
        family = [parent, *parent.children(recursive=True)]
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for p in family
            for c in p.net_connections(kind="tcp")
        )
    except psutil.NoSuchProcess:
        return False


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers (below 500); with ``proc``, an answer counts once ``proc`` is
    the process listening on the URL's port."""
    deadline = time.monotonic() + timeout
    port = httpx.URL(url).port
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500 and (
                proc is None or port is None or listens_on(proc, port)
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOGRAPH_")}
    # No network here: translation is off unless a test points it at the sandbox's fake.
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "HELIOGRAPH_LOG_LEVEL": "WARNING",
            "HELIOGRAPH_TRANSLATION_ENABLED": "false",
            # The test process's shared language detector (tests/conftest.py), not one
            # in the working tree's var/ that would outlive the run by ten minutes.
            **{
                k: os.environ[k]
                for k in (
                    "HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET",
                    "HELIOGRAPH_LANGUAGE_DETECTOR_IDLE_EXIT_S",
                )
                if k in os.environ
            },
            # The working tree, not what the editable install knew when it was made: a
            # package added since (a new top-level folder) is importable all the same.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
    )
    env.update(extra)
    return env


def heliograph_cli(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    """Run ``heliograph ARGS`` as a user would; its stdout. A failure shows its output."""
    done = subprocess.run(
        [str(BIN / "heliograph"), *args],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"heliograph {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start_heliograph(
    args: list[str], env: Mapping[str, str], log_path: Path, port: int | None = None
) -> Service:
    """``heliograph <args>``; with ``port`` it is a server and we wait for /healthz."""
    cmd = [str(BIN / "heliograph"), *args]
    if port is not None:
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
    log = log_path.open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(env), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}" if port else ""
    if port is not None:
        try:
            wait_http(f"{url}/healthz", proc=proc)
        except Exception:
            proc.kill()
            raise RuntimeError(log_path.read_text(errors="replace")[-3000:]) from None
    return Service(proc, url, log_path)


def start_python(
    module: str, args: list[str], env: Mapping[str, str], log_path: Path, health_url: str
) -> Service:
    log = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=child_env(env), stdout=log, stderr=log
    )
    wait_http(health_url, proc=proc)
    return Service(proc, health_url.rsplit("/", 1)[0], log_path)


def start_sandbox(port: int, env: Mapping[str, str], log_path: Path) -> Service:
    """The provider sandbox (``sandbox``) on 127.0.0.1:``port``, once its health answers."""
    health = f"http://127.0.0.1:{port}/_sandbox/health"
    return start_python("sandbox", ["--port", str(port)], env, log_path, health)


async def eventually(
    what: str, check: Callable[[], Awaitable[Any]], within: float, *services: Service
) -> Any:
    """``check()`` until it answers something truthy, which it returns; fails the test when
    one of ``services`` dies meanwhile or ``within`` seconds pass (with their logs)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        for service in services:
            assert service.proc.poll() is None, f"{service.log_path.name} died:\n{service.log()}"
        if time.monotonic() > deadline:
            logs = "\n".join(s.log()[-3000:] for s in services)
            raise AssertionError(f"no {what} after {within}s\n{logs}")
        await asyncio.sleep(0.2)
