"""One language detector per machine, shared by every Heliograph process on it (#17).

lingua builds its models on each process's own heap (about 230 MB for the demo's
languages), so N ``heliograph serve`` / ``worker`` processes on one machine would hold N
copies. Instead, the first process that needs a detection starts this module as a small
process of its own (``python -m transcription.shared_detector``), listening on a Unix
socket (``HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET``); every process on the machine sends it
texts and gets lingua's ranked confidences back. The rules that turn confidences into a
decision (``transcription.language.detect``) stay in the caller, so the result is the same
as in-process detection.

- Protocol: one JSON object per line. Ask ``{"text": "...", "candidates": ["en", "es"]}``,
  get ``{"ranked": [["es", 0.73], ["en", 0.01], ...]}`` or ``{"error": "..."}``.
- Exactly one server per socket: it holds an exclusive ``flock`` on ``<socket>.lock`` for
  its lifetime; a second one started in a race sees the lock and exits at once.
- It exits after ``--idle-exit`` seconds with no open connection and no request (the next
  detection starts it again; its models load lazily, as in-process).
- A caller that cannot reach or start it within ``start_timeout_s`` raises
  ``DetectorUnavailable``; ``transcription.language`` then detects in-process and logs
  it, so no message waits on the detector.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[1]  # the project: what ``-m`` needs on sys.path
MAX_LINE = 1 << 20  # one request: a chat message is far shorter


class DetectorUnavailable(RuntimeError):
    """The shared detector could not be reached or started."""


# --- the server ----------------------------------------------------------------------------


def _lock(path: Path) -> IO[str] | None:
    """The server's exclusive lock (held until the process ends); None if another holds it."""
    handle = open(f"{path}.lock", "a+")  # kept open: the lock lives with it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _rank(request: Any) -> dict[str, Any]:
    from transcription import language

    if not isinstance(request, dict):
        return {"error": "expected a JSON object"}
    text, candidates = request.get("text"), request.get("candidates")
    if not isinstance(text, str) or not isinstance(candidates, list) or not candidates:
        return {"error": 'expected {"text": str, "candidates": [ISO 639-1 codes]}'}
    try:
        ranked = language.local_confidences(text, tuple(str(c) for c in candidates))
    except language.UnknownLanguageCode as exc:
        return {"error": str(exc)}
    return {"ranked": ranked}


class _Server:
    def __init__(self, idle_exit_s: float) -> None:
        self.idle_exit_s = idle_exit_s
        self.connections = 0
        self.last_activity = time.monotonic()
        # One thread ranks: lingua's work holds the GIL anyway, and models then load one
        # language at a time (parallel first texts in several languages would hold the
        # decompression buffers of each at once: a higher peak for no gain).
        self.ranker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingua")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                self.last_activity = time.monotonic()
                try:
                    request = json.loads(line)
                except ValueError:
                    reply: dict[str, Any] = {"error": "not JSON"}
                else:
                    loop = asyncio.get_running_loop()
                    reply = await loop.run_in_executor(self.ranker, _rank, request)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                self.last_activity = time.monotonic()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a client gone or a line too long: drop that connection only
        finally:
            self.connections -= 1
            self.last_activity = time.monotonic()
            writer.close()

    async def idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_exit_s / 4))
            quiet = time.monotonic() - self.last_activity
            if self.connections == 0 and quiet >= self.idle_exit_s:
                return


async def serve(path: Path, idle_exit_s: float) -> None:
    """Answer on ``path`` until idle for ``idle_exit_s`` (the caller holds the lock)."""
    server = _Server(idle_exit_s)
    listener = await asyncio.start_unix_server(server.handle, path=str(path), limit=MAX_LINE)
    log.info("language detector listening on %s (pid %d)", path, os.getpid())
    try:
        await server.idle()
    finally:
        listener.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--idle-exit", type=float, default=600.0, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    path: Path = args.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    held = _lock(path)
    deadline = time.monotonic() + 10
    while held is None:  # another server holds the socket, or is just leaving it
        if _answers(path) or time.monotonic() >= deadline:
            return 0
        time.sleep(0.1)
        held = _lock(path)
    pid_file = Path(f"{path}.pid")
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a server that died: the lock says none runs
        pid_file.write_text(str(os.getpid()))
        asyncio.run(serve(path, args.idle_exit))
    finally:
        for leftover in (path, pid_file):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        held.close()
    return 0


# --- the client ----------------------------------------------------------------------------


class SharedDetector:
    """A caller's handle: one connection per thread (detection runs in worker threads)."""

    def __init__(self, path: str | Path, idle_exit_s: float = 600.0, start_timeout_s: float = 30.0):
        self.path = Path(path).absolute()
        self.idle_exit_s = idle_exit_s
        self.start_timeout_s = start_timeout_s
        self._local = threading.local()
        self._starting = threading.Lock()

    def confidences(self, text: str, candidates: Sequence[str]) -> list[tuple[str, float]]:
        request = json.dumps({"text": text, "candidates": list(candidates)}).encode() + b"\n"
        # Three tries: a kept connection may be to a server that has died, and a new one
        # may still reach it while it dies (a killed process's other threads hold its
        # listening socket a moment after its main thread is gone; the connection is
        # then reset); the last try starts a server when none answers.
        for attempt in (1, 2, 3):
            try:
                conn = self._connection()
                conn.sendall(request)
                line = self._local.file.readline(MAX_LINE + 2)
                if not line.endswith(b"\n"):
                    raise ConnectionError("the detector closed the connection")
                break
            except OSError as exc:
                self._drop()
                if attempt == 3:
                    raise DetectorUnavailable(f"language detector at {self.path}: {exc}") from exc
        reply = json.loads(line)
        if "error" in reply:
            from transcription.language import UnknownLanguageCode

            raise UnknownLanguageCode(reply["error"])
        return [(str(code), float(value)) for code, value in reply["ranked"]]

    def close(self) -> None:
        self._drop()

    def _connection(self) -> socket.socket:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = self._connect()
        except OSError:
            conn = self._start()
        self._local.conn, self._local.file = conn, conn.makefile("rb")
        return conn

    def _connect(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.path))
        except OSError:
            conn.close()
            raise
        return conn

    def _start(self) -> socket.socket:
        """Start a server (a racing one loses the lock and exits) and wait for it."""
        with self._starting:
            with contextlib.suppress(OSError):
                return self._connect()  # another thread started it meanwhile
            self.path.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
            env["HELIOGRAPH_DETECTOR_LOG"] = f"{self.path}.log"
            # Through a shell that exits at once: the server is nobody's child (init
            # reaps it), in a session of its own (a terminal's ^C does not reach it).
            subprocess.run(
                [
                    "/bin/sh",
                    "-c",
                    '"$@" </dev/null >>"$HELIOGRAPH_DETECTOR_LOG" 2>&1 &',
                    "sh",
                    sys.executable,
                    "-m",
                    "transcription.shared_detector",
                    "--socket",
                    str(self.path),
                    "--idle-exit",
                    str(self.idle_exit_s),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                check=True,
                timeout=30,
            )
            deadline = time.monotonic() + self.start_timeout_s
            while True:
                try:
                    return self._connect()
                except OSError as exc:
                    if time.monotonic() >= deadline:  # final: no other try waits again
                        raise DetectorUnavailable(
                            f"no language detector answered at {self.path} within "
                            f"{self.start_timeout_s:g} s of starting one: {exc}"
                        ) from exc
                    time.sleep(0.05)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                self._local.file.close()
            conn.close()


_clients: dict[tuple[Path, float], SharedDetector] = {}
_clients_lock = threading.Lock()


def client(path: str | Path, idle_exit_s: float = 600.0) -> SharedDetector:
    """This process's handle on the detector at ``path`` (one per path)."""
    key = (Path(path).absolute(), idle_exit_s)
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = SharedDetector(key[0], idle_exit_s)
        return found


if __name__ == "__main__":
    sys.exit(main())
