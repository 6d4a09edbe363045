"""Slack's side of the tests: its documented payloads, signed the way Slack signs them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from heliograph.settings import reset_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example secret of Slack's docs
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def signed(
    body: bytes, content_type: str, age_s: int = 0, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    """Slack's headers: ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    timestamp = str(int(time.time()) - age_s)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
    }


def slack_env(monkeypatch: pytest.MonkeyPatch, api_base: str) -> None:
    monkeypatch.setenv("HELIOGRAPH_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("HELIOGRAPH_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("HELIOGRAPH_SLACK_API_BASE", api_base)
    reset_settings()


async def post_event(
    client: httpx.AsyncClient, payload: dict[str, Any], **headers: str
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        "/webhooks/slack/events",
        content=body,
        headers={**signed(body, "application/json"), **headers},
    )
