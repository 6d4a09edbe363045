"""The recorded provider payloads in ``tests/fixtures/<channel>/``, loaded for a test."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def sample(channel: str, name: str, **changes: str) -> dict[str, Any]:
    """``tests/fixtures/<channel>/<name>.json``, its top-level fields overridden by
    ``changes`` (a Twilio form with another ``Body``, say)."""
    data: dict[str, Any] = json.loads((FIXTURES / channel / f"{name}.json").read_text())
    return {**data, **changes}


def whatsapp_sample(name: str, written_ago_s: float | None = None) -> dict[str, Any]:
    """A WhatsApp Cloud API notification; with ``written_ago_s`` its message is moved to
    that many seconds ago (None: the time the fixture documents)."""
    payload = sample("whatsapp", name)
    if written_ago_s is not None:
        message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
        message["timestamp"] = str(int(time.time() - written_ago_s))
    return payload


def email_sample(name: str) -> bytes:
    """A recorded mail, ``tests/fixtures/email/<name>.eml``, as the bytes that arrive."""
    return (FIXTURES / "email" / f"{name}.eml").read_bytes()
