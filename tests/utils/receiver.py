"""A stand-in for the platform on the other end of the API channel, as its own process.

``python -m tests.utils.receiver --port N [--delay-ms D]`` accepts the signed reply POSTs
Heliograph sends to ``HELIOGRAPH_API_OUTBOUND_URL`` (any path), checks the signature the
way a real receiver must (403 otherwise), and records every delivery *attempt* it
acknowledged, repeats included, so a test can count how often each reply arrived.
``GET /calls`` returns them in arrival order; ``GET /health`` answers when it is up.

It is deliberately independent of the product code (stdlib only): a receiver that shared
Heliograph's signing helper could not catch a signing bug.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_calls: list[dict[str, Any]] = []


def _secret() -> bytes:
    return (
        os.environ.get("HELIOGRAPH_API_OUTBOUND_SECRET")
        or os.environ.get("HELIOGRAPH_API_INBOUND_SECRET", "")
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the delivery worker's client expects
    delay_s = 0.0

    def _answer(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            self._answer(200, {"status": "ok"})
        elif self.path.startswith("/calls"):
            with _lock:
                self._answer(200, list(_calls))
        else:
            self._answer(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = "sha256=" + hmac.new(_secret(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers.get("X-Heliograph-Signature", "")):
            self._answer(403, {"error": "bad signature"})
            return
        if self.delay_s:
            time.sleep(self.delay_s)  # a receiver that takes a moment widens the crash window
        reply = json.loads(body)
        with _lock:
            _calls.append(
                {
                    "seq": len(_calls),
                    "message_id": reply.get("message_id"),
                    "conversation_id": reply.get("conversation_id"),
                    "recipient": (reply.get("recipient") or {}).get("id"),
                    "text": reply.get("text"),
                    "delivery_header": self.headers.get("X-Heliograph-Delivery"),
                }
            )
        self._answer(200, {"ok": True})

    def log_message(self, format: str, *args: Any) -> None:
        pass  # thousands of requests; the recorded calls are the log


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of new connections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    _Handler.delay_s = args.delay_ms / 1000
    _Server(("127.0.0.1", args.port), _Handler).serve_forever()


if __name__ == "__main__":
    main()
