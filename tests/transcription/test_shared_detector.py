"""One language detector per machine, shared by the processes on it (#17).

Real processes on a real Unix socket: the detector that ``transcription.shared_detector``
starts answers as in-process detection does on the whole labelled set; callers racing to
start it get one detector; one killed is started again; one that cannot start leaves
detection to the caller; a bad request gets an error and the connection goes on; an idle
detector leaves.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.language_calibration import load
from transcription.language import DEFAULT_CANDIDATES, detect
from transcription.shared_detector import SharedDetector

pytest.importorskip("lingua")

CANDIDATES = ("en", "es", "pt", "de", "ru")


def _pid(path: Path) -> int:
    return int(Path(f"{path}.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if not Path(f"/proc/{pid}").exists():
        return False
    # A killed process's main thread can be a zombie while its other threads still exit
    # (holding its sockets): gone means no thread left, not just the main one.
    return "Z" not in _state(pid) or _threads(pid) > 1


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except FileNotFoundError:
        return "Z"


def _detectors(path: Path) -> list[int]:
    """Live processes serving ``path`` (by their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if b"transcription.shared_detector" in cmdline and str(path).encode() in cmdline:
            if _state(int(entry.name)) != "Z":
                found.append(int(entry.name))
    return found


def _wait_gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """In a short directory: a Unix socket's path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hg-sd-", dir="/tmp")) / "d.sock"
    yield path
    for pid in _detectors(path):
        os.kill(pid, signal.SIGTERM)


def test_the_shared_detector_decides_as_in_process_on_the_labelled_set(
    socket_path: Path,
) -> None:
    shared = SharedDetector(socket_path, idle_exit_s=60)
    messages = load()
    for m in messages:
        here = detect(m.text, known=m.prior, candidates=DEFAULT_CANDIDATES)
        there = detect(m.text, known=m.prior, candidates=DEFAULT_CANDIDATES, shared=shared)
        # lingua sums in its hash maps' order, which differs between processes: the
        # last bits of a confidence may differ, nothing else.
        assert (there.language, there.decided, there.reason) == (
            here.language,
            here.decided,
            here.reason,
        ), m.text
        assert there.confidence == pytest.approx(here.confidence, abs=1e-9)
    assert len(messages) > 300
    pid = _pid(socket_path)
    assert pid != os.getpid() and _alive(pid)  # the models live in the detector's process
    shared.close()


def test_callers_racing_to_start_it_get_one_detector(socket_path: Path) -> None:
    callers = [SharedDetector(socket_path, idle_exit_s=60) for _ in range(4)]
    answers: list[str] = []

    def ask(caller: SharedDetector) -> None:
        answers.append(caller.confidences("obrigado pela ajuda de ontem", CANDIDATES)[0][0])

    threads = [threading.Thread(target=ask, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == ["pt"] * 4
    time.sleep(0.5)  # a server that lost the race has left by now
    assert _detectors(socket_path) == [_pid(socket_path)]


def test_a_killed_detector_is_started_again_by_the_next_detection(socket_path: Path) -> None:
    shared = SharedDetector(socket_path, idle_exit_s=60)
    assert shared.confidences("danke für die schnelle Antwort", CANDIDATES)[0][0] == "de"
    first = _pid(socket_path)
    os.kill(first, signal.SIGKILL)
    assert _wait_gone(first)
    assert shared.confidences("спасибо за быстрый ответ", CANDIDATES)[0][0] == "ru"
    second = _pid(socket_path)
    assert second != first and _alive(second)


def test_a_detector_that_cannot_start_leaves_detection_to_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    shared = SharedDetector(blocker / "d.sock", idle_exit_s=60, start_timeout_s=2)
    with caplog.at_level(logging.WARNING, logger="transcription.language"):
        found = detect("hola, no puedo entrar a mi curso", candidates=CANDIDATES, shared=shared)
    assert (found.language, found.decided) == ("es", True)
    assert "detecting in this process instead" in caplog.text


def test_a_bad_request_gets_an_error_and_the_connection_goes_on(socket_path: Path) -> None:
    SharedDetector(socket_path, idle_exit_s=60).confidences("hello there", CANDIDATES)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(socket_path))
        lines = conn.makefile("rb")
        for request, expected in [
            (b"not json\n", {"error": "not JSON"}),
            (b'{"text": 3}\n', None),
            (b'{"text": "hi", "candidates": ["en", "xx"]}\n', None),
        ]:
            conn.sendall(request)
            reply = json.loads(lines.readline())
            assert "error" in reply, reply
            if expected is not None:
                assert reply == expected
        conn.sendall(json.dumps({"text": "gracias", "candidates": ["en", "es"]}).encode() + b"\n")
        assert json.loads(lines.readline())["ranked"][0][0] == "es"


def test_an_idle_detector_leaves_and_takes_its_socket_with_it(socket_path: Path) -> None:
    shared = SharedDetector(socket_path, idle_exit_s=1)
    shared.confidences("hello there", CANDIDATES)
    pid = _pid(socket_path)
    shared.close()
    assert _wait_gone(pid)
    assert not socket_path.exists() and not Path(f"{socket_path}.pid").exists()


def test_the_service_setting_picks_the_shared_detector(socket_path: Path) -> None:
    """In a fresh interpreter, the default settings detect through the shared detector."""
    script = (
        "import os; from inbox.translation import _detect; "
        "print(_detect('hola, no puedo entrar a mi curso', None, ('en', 'es')).language)"
    )
    env = {
        **os.environ,
        "HELIOGRAPH_LANGUAGE_DETECTOR_SOCKET": str(socket_path),
        "HELIOGRAPH_LANGUAGE_DETECTOR": "shared",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "es", done.stderr
    assert _detectors(socket_path) == [_pid(socket_path)]
