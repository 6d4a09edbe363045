"""``POST /webhooks/email`` turns away what it cannot trust or understand and stores none of
it; automatic mail (RFC 3834), bounces and our own mail coming back are acknowledged (so no
one sends them again) and dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from heliograph.db import Database
from heliograph.settings import get_settings, reset_settings
from inbox.models import Attachment, Message
from tests.utils.db import count, rows
from tests.utils.http import post_email
from tests.utils.jobs import run_jobs
from tests.utils.mail import (
    AUTH,
    SECRET,
    SUPPORT,
    app_client,
    email_settings,
    file_bytes,
    nothing_stored,
    with_headers,
)
from tests.utils.samples import email_sample


@pytest.fixture
async def mail(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    email_settings(monkeypatch, tmp_path)
    async for http in app_client():
        yield http


# --- what is automatic mail, what is a loop ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "dropped"),
    [
        ({"Auto_Submitted": "auto-replied"}, "auto-reply"),
        ({"Auto_Submitted": "auto-notified; owner-email=x@y.example"}, "auto-reply"),
        ({"X_Autoreply": "yes"}, "auto-reply"),
        ({"X_Autorespond": "Vacation"}, "auto-reply"),
        ({"Precedence": "bulk"}, "auto-reply"),
        ({"Precedence": "list"}, "auto-reply"),
        ({"Return_Path": "<>"}, "bounce"),
        ({"Auto_Submitted": "no"}, None),  # RFC 3834: "no" is a person writing
    ],
)
async def test_automatic_mail_is_dropped_by_its_headers(
    mail: httpx.AsyncClient, sqlite_database: Database, headers: dict[str, str], dropped: str | None
) -> None:
    raw = with_headers(email_sample("gmail_first"), drop=("return-path",), **headers)
    answer = await post_email(mail, raw)
    assert answer.status_code == 200 and answer.json()["dropped"] == dropped
    assert await count(sqlite_database, Message) == (0 if dropped else 1)


async def test_our_own_mail_coming_back_is_a_loop_and_not_stored(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    from_us = with_headers(email_sample("gmail_first"), drop=("from",), From=f"Support <{SUPPORT}>")
    our_id = with_headers(
        email_sample("gmail_first"),
        drop=("message-id",),
        Message_ID="<heliograph.7.0123456789abcdef@heliograph.example>",
    )
    for raw in (from_us, our_id):
        answer = await post_email(mail, raw)
        assert answer.status_code == 200 and answer.json()["dropped"] == "loop"
    assert await nothing_stored(sqlite_database)


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-secret", f"Basic {SECRET}", "Bearer", f"bearer {SECRET}x"],
)
async def test_a_missing_or_wrong_secret_is_403(
    mail: httpx.AsyncClient, sqlite_database: Database, authorization: str | None
) -> None:
    headers = {"Content-Type": "message/rfc822"}
    if authorization is not None:
        headers["Authorization"] = authorization
    answer = await mail.post(
        "/webhooks/email", content=email_sample("gmail_first"), headers=headers
    )
    assert answer.status_code == 403
    assert "secret" in answer.json()["error"].lower()
    assert await nothing_stored(sqlite_database)


async def test_without_a_configured_secret_nothing_is_accepted(
    mail: httpx.AsyncClient, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_EMAIL_WEBHOOK_SECRET", "")
    reset_settings()
    answer = await mail.post(
        "/webhooks/email", content=email_sample("gmail_first"), headers={"Authorization": "Bearer "}
    )
    assert answer.status_code == 403
    assert "HELIOGRAPH_EMAIL_WEBHOOK_SECRET is not set" in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_an_oversized_mail_is_413_and_nothing_is_stored(
    mail: httpx.AsyncClient, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = email_sample("gmail_first")
    monkeypatch.setenv("HELIOGRAPH_MAX_EMAIL_BYTES", str(len(raw) - 1))
    reset_settings()

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to trust
        for i in range(0, len(raw), 500):
            yield raw[i : i + 500]

    declared = await post_email(mail, raw)
    streamed = await mail.post("/webhooks/email", content=chunked(), headers=AUTH)

    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert f"limit of {len(raw) - 1} bytes" in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_mail_has_its_own_size_limit_above_the_webhooks_one(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    big = EmailMessage()
    big["From"], big["To"], big["Subject"] = "jane.doe@gmail.com", SUPPORT, "Scan"
    big["Message-ID"] = "<big-scan@mail.gmail.com>"
    big.set_content("The scan is attached.")
    scan = b"%PDF-1.4\n" + bytes(1_500_000)
    big.add_attachment(scan, maintype="application", subtype="pdf", filename="scan.pdf")
    raw = big.as_bytes()
    assert len(raw) > get_settings().max_body_bytes  # what every JSON webhook is held to

    answer = await post_email(mail, raw)

    assert answer.status_code == 200, answer.text
    await run_jobs(sqlite_database)
    (attachment,) = await rows(sqlite_database, Attachment)
    assert attachment.storage_path and file_bytes(attachment.storage_path) == scan


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"this is not an email at all", "no From address"),
        (b'{"from": "jane@example.com", "text": "hi"}', "no From address"),
        (b"Subject: hello\r\nTo: support@heliograph.example\r\n\r\nhi", "no From address"),
    ],
)
async def test_what_is_not_a_mail_is_400(
    mail: httpx.AsyncClient, sqlite_database: Database, body: bytes, problem: str
) -> None:
    answer = await post_email(mail, body)
    assert answer.status_code == 400
    assert problem in answer.json()["error"]
    assert await nothing_stored(sqlite_database)
