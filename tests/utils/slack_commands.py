"""Slash commands the way Slack sends them: its documented form, signed, and the answers
that come back later at the command's ``response_url`` (the sandbox's fake)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.utils.slack import SIGNING_SECRET, fixture, signed


def command_body(text: str, user_id: str, response_url: str, command: str = "/hg") -> bytes:
    """Slack's example slash-command request (tests/fixtures/slack/slash_command.json)
    with our command, text, user and response URL."""
    form = {
        **fixture("slash_command"),
        "command": command,
        "text": text,
        "user_id": user_id,
        "response_url": response_url,
    }
    return urlencode(form).encode()


async def post_command(
    client: httpx.AsyncClient,
    text: str,
    user_id: str,
    response_url: str,
    *,
    secret: str | None = None,
) -> httpx.Response:
    body = command_body(text, user_id, response_url)
    headers = signed(body, "application/x-www-form-urlencoded", secret=secret or SIGNING_SECRET)
    return await client.post("/webhooks/slack/commands", content=body, headers=headers)


def response_url(sandbox: str) -> tuple[str, str]:
    """A fresh response URL on the sandbox and the key its answers are listed under."""
    key = uuid.uuid4().hex
    return f"{sandbox}/slack/responses/{key}", key


async def responses(sandbox: str, key: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        found = await http.get(f"{sandbox}/_sandbox/slack/responses/{key}")
    found.raise_for_status()
    return list(found.json())


async def wait_for_response(
    sandbox: str, key: str, count: int = 1, within: float = 30.0
) -> list[dict[str, Any]]:
    """The answers posted for one command, once ``count`` of them arrived."""
    deadline = time.monotonic() + within
    while True:
        got = await responses(sandbox, key)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


def block_text(payload: dict[str, Any]) -> str:
    """The header, section and context texts of a Block Kit answer, one per line."""
    parts: list[str] = []
    for block in payload.get("blocks") or []:
        if block["type"] in ("header", "section"):
            parts.append(block["text"]["text"])
        elif block["type"] == "context":
            parts.extend(e["text"] for e in block["elements"])
    return "\n".join(parts)
