"""The email channel in tests: its settings, the app that receives mail, and mails edited
for a case (a header dropped or added)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from crm_core.models import Customer
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox.models import Conversation, Message
from tests.utils.db import count
from tests.utils.http import EMAIL_AUTH as AUTH
from tests.utils.http import EMAIL_SECRET as SECRET

SUPPORT = "support@heliograph.example"
GMAIL_FIRST_ID = "<CAJa8qF1vZ3QbZkUr6cUo5Jj9Q0mo5wTqW9D3xE7gH2y4bA@mail.gmail.com>"

__all__ = ["AUTH", "GMAIL_FIRST_ID", "SECRET", "SUPPORT"]


def with_headers(raw: bytes, drop: tuple[str, ...] = (), **add: str) -> bytes:
    """The mail with the ``drop`` headers (and their folded lines) removed and ``add`` put
    first (``Auto_Submitted`` -> ``Auto-Submitted``)."""
    head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the previous header
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].decode().lower() in drop
        if not dropping:
            kept.append(line)
    extra = [f"{k.replace('_', '-')}: {v}".encode() for k, v in add.items()]
    return b"\n".join(extra + kept) + sep + body


def file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def email_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> None:
    monkeypatch.setenv("HELIOGRAPH_EMAIL_ADDRESS", SUPPORT)
    monkeypatch.setenv("HELIOGRAPH_EMAIL_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    for key, value in extra.items():
        monkeypatch.setenv(f"HELIOGRAPH_{key.upper()}", value)
    reset_settings()


async def app_client() -> AsyncIterator[httpx.AsyncClient]:
    from service.app import create_app

    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def nothing_stored(database: Database) -> bool:
    return [await count(database, m) for m in (Message, Customer, Conversation)] == [0, 0, 0]
