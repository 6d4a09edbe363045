"""Attachments agents send (#16): the provider's limits checked before anything is stored,
Telegram's sendPhoto/sendDocument through aiogram's real Bot against the sandbox's fake
Bot API, the REST reply with base64 files, and the signed short-lived /media URL."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import itsdangerous
import pytest
from sqlalchemy import func, select

from channels import whatsapp_cloud
from channels.base import WebhookRequest
from channels.email import compose
from channels.email.settings import EmailSettings
from channels.telegram import close_bot
from channels.twilio import close_client as twilio_close
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox import attachments_out, intake
from inbox.attachments_out import AttachmentRefused, OutgoingFile, check
from inbox.conversations import reply
from inbox.models import Attachment, Message
from inbox.outbox import OutboundMessage
from tests.utils.factories import member_with_token, receive
from tests.utils.http import TELEGRAM_TOKEN as TOKEN
from tests.utils.http import TELEGRAM_WEBHOOK_SECRET as WEBHOOK_SECRET
from tests.utils.jobs import run_jobs
from tests.utils.samples import whatsapp_sample
from tests.utils.sandbox import API_ENV, TELEGRAM_ENV, Receiver

TWILIO_ACCOUNT = "AC" + "2" * 32
TWILIO_TOKEN = "test-twilio-auth-token-attachments"
TWILIO_ENV = {
    "HELIOGRAPH_TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
    "HELIOGRAPH_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
}
WA_TOKEN = "test-whatsapp-access-token-0123"
WA_PHONE_ID = "106540352242922"
WA_SECRET = "test-whatsapp-app-secret-0123456789"
WA_ENV = {
    "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN": WA_TOKEN,
    "HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID": WA_PHONE_ID,
    "HELIOGRAPH_WHATSAPP_APP_SECRET": WA_SECRET,
}
# The fake Bot API, the API channel's receiver, the fake Twilio, the fake Graph API.
SANDBOX_ENV = {**TELEGRAM_ENV, **API_ENV, **TWILIO_ENV, **WA_ENV}
CHAT = "2222222"
MB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048
PDF = b"%PDF-1.4\n" + b"x" * 4096


def image(size: int = len(PNG)) -> OutgoingFile:
    return OutgoingFile("photo.png", "image/png", PNG.ljust(size, b"\x00"))


def document(size: int = len(PDF), ctype: str = "application/pdf") -> OutgoingFile:
    return OutgoingFile("invoice.pdf", ctype, PDF.ljust(size, b"x"))


# --- the providers' limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "files", "reason"),
    [
        ("telegram", [image(11 * MB)], "telegram takes images up to 10.0 MB"),
        ("telegram", [document(51 * MB)], "telegram takes documents up to 50.0 MB"),
        ("sms", [image(6 * MB)], "sms takes images up to 5.0 MB"),
        ("sms", [document(ctype="application/x-msdownload")], "type application/x-msdownload"),
        ("whatsapp", [image(6 * MB)], "whatsapp takes images up to 5.0 MB"),
        ("whatsapp", [document(101 * MB)], "whatsapp takes documents up to 100.0 MB"),
        ("whatsapp", [image(), document()], "at most 1 attachment"),
        ("email", [document(26 * MB)], "email takes documents up to 25.0 MB"),
        ("telegram", [OutgoingFile("empty.txt", "text/plain", b"")], "empty.txt is empty"),
    ],
)
def test_what_a_provider_would_refuse_is_refused_with_the_reason(
    channel: str, files: list[OutgoingFile], reason: str
) -> None:
    with pytest.raises(AttachmentRefused, match=re.escape(reason)):
        check(channel, files)


def test_what_fits_passes() -> None:
    check("telegram", [image(9 * MB), document(49 * MB)])
    check("sms", [image(4 * MB)])
    check("whatsapp", [document(99 * MB)])
    check("slack", [document(200 * MB, "application/x-anything")])
    check("api", [])


async def counts(database: Database) -> tuple[int, int]:
    async with database.read_session() as session:
        messages = (await session.execute(select(func.count()).select_from(Message))).scalar()
        files = (await session.execute(select(func.count()).select_from(Attachment))).scalar()
    return int(messages or 0), int(files or 0)


async def test_a_refused_file_stores_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    conv = await receive(database, f"{CHAT}:9", CHAT, channel="telegram")
    before = await counts(database)
    async with database.session() as session:
        with pytest.raises(AttachmentRefused, match=r"up to 10\.0 MB"):
            await reply(session, conv.conversation_id, "", None, attachments=[image(11 * MB)])
        await session.rollback()
    assert await counts(database) == before
    assert not (tmp_path / "media").exists()


# --- Telegram: sendPhoto / sendDocument through aiogram --------------------------------------


@pytest.fixture
async def fake_telegram(
    database: Database, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_API_BASE", f"{sandbox_url}/telegram")
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    http = httpx.AsyncClient(base_url=sandbox_url, timeout=10)
    await http.delete("/_sandbox/calls")
    await http.delete("/_sandbox/telegram")
    yield http
    await http.delete("/_sandbox/telegram")
    await http.aclose()
    await close_bot()


async def telegram_calls(http: httpx.AsyncClient, method: str) -> list[dict[str, Any]]:
    answer = await http.get("/_sandbox/calls", params={"provider": "telegram"})
    return [c["params"] for c in answer.json() if c["method"] == method]


async def deliver(database: Database, message_id: int) -> Message:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await run_jobs(database)
        async with database.read_session() as session:
            found = await session.get(Message, message_id)
        assert found is not None
        if found.delivery_status not in ("queued", "sending"):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the reply did not leave in time")


async def test_telegram_sends_an_image_as_a_photo_and_a_document_as_a_document(
    database: Database, fake_telegram: httpx.AsyncClient
) -> None:
    conv = await receive(database, f"{CHAT}:1", CHAT, channel="telegram")
    async with database.session() as session:
        with_image = await reply(
            session, conv.conversation_id, "Here is the photo", None, attachments=[image()]
        )
        await session.commit()
    sent = await deliver(database, with_image.id)  # type: ignore[arg-type]
    assert sent.delivery_status == "sent", sent.delivery_error
    async with database.session() as session:
        with_doc = await reply(session, conv.conversation_id, "", None, attachments=[document()])
        await session.commit()
    sent = await deliver(database, with_doc.id)  # type: ignore[arg-type]
    assert sent.delivery_status == "sent", sent.delivery_error

    assert [c["text"] for c in await telegram_calls(fake_telegram, "sendMessage")] == [
        "Here is the photo"
    ]
    photos = await telegram_calls(fake_telegram, "sendPhoto")
    documents = await telegram_calls(fake_telegram, "sendDocument")
    assert [p["chat_id"] for p in photos] == [CHAT]
    assert photos[0]["_upload"]["size"] == len(PNG)
    assert [(d["_upload"]["filename"], d["_upload"]["size"]) for d in documents] == [
        ("invoice.pdf", len(PDF))
    ]
    chat = (await fake_telegram.get(f"/_sandbox/telegram/chats/{CHAT}")).json()["sent"]
    assert "photo" in chat[1] and chat[2]["document"]["file_name"] == "invoice.pdf"

    # Stored like inbound files (media_dir, by content hash), marked as sent by us.
    async with database.read_session() as session:
        rows = (await session.execute(select(Attachment).order_by(Attachment.id))).scalars()
        stored = [(a.direction, a.kind, a.size) for a in rows]
    assert stored == [("out", "image", len(PNG)), ("out", "file", len(PDF))]

    # A replayed job sends nothing twice (the progress notes the text and each file).
    await run_jobs(database)
    assert len(await telegram_calls(fake_telegram, "sendPhoto")) == 1


# --- the REST API and the signed media URL ------------------------------------------------


async def test_the_api_reply_takes_base64_files_and_refuses_with_the_reason(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    conv = await receive(database, "m-att", "cust-att", channel="telegram")
    _, auth = await member_with_token(database)
    path = f"/api/v1/conversations/{conv.conversation_id}/reply"

    plain = await client.post(path, json={"text": "Just text"}, headers=auth)
    assert plain.status_code == 202, plain.text
    empty = await client.post(path, json={"text": ""}, headers=auth)
    assert empty.status_code == 422

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    body = {
        "text": "",
        "attachments": [
            {"filename": "a.pdf", "content_type": "application/pdf", "data_base64": b64(PDF)}
        ],
    }
    ok = await client.post(path, json=body, headers=auth)
    assert ok.status_code == 202, ok.text
    big = {
        "filename": "big.png",
        "content_type": "image/png",
        "data_base64": b64(image(11 * MB).data),
    }
    before = await counts(database)
    refused = await client.post(path, json={"text": "x", "attachments": [big]}, headers=auth)
    assert refused.status_code == 422
    assert "big.png is 11.0 MB; telegram takes images up to 10.0 MB" in refused.text
    assert await counts(database) == before


async def test_the_signed_media_url_works_within_its_life_and_is_403_after(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    conv = await receive(database, "m-media", "cust-media", channel="telegram")
    async with database.session() as session:
        message = await reply(session, conv.conversation_id, "", None, attachments=[document()])
        await session.commit()
        sent = await attachments_out.outgoing_of(session, message.id)  # type: ignore[arg-type]
    token = attachments_out.media_token(sent[0].attachment_id)
    assert sent[0].url.endswith(f"/media/{token}")

    fetched = await client.get(f"/media/{token}")
    assert fetched.status_code == 200
    assert fetched.content == PDF and fetched.headers["content-type"] == "application/pdf"

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await client.get(f"/media/{tampered}")).status_code == 403
    other = attachments_out.media_token(sent[0].attachment_id + 1)
    assert (await client.get(f"/media/{other}")).status_code == 404

    signed_at = time.time() - attachments_out.MEDIA_URL_MAX_AGE_S - 5
    with pytest.MonkeyPatch.context() as clock:
        clock.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda _: int(signed_at))
        old = attachments_out.media_token(sent[0].attachment_id)
    expired = await client.get(f"/media/{old}")
    assert expired.status_code == 403


# --- the API channel (a signed URL in the outbound POST) and email (a MIME part) ------------


async def test_the_api_channel_posts_a_signed_url_that_fetches_the_file(
    client: httpx.AsyncClient,
    database: Database,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("HELIOGRAPH_PUBLIC_URL", "https://support.example")
    reset_settings()
    conv = await receive(database, "m-api-att", "cust-api-att")
    for files in ([image()], [document()]):
        async with database.session() as session:
            message = await reply(
                session, conv.conversation_id, "See attached", None, attachments=files
            )
            await session.commit()
        sent = await deliver(database, message.id)  # type: ignore[arg-type]
        assert sent.delivery_status == "delivered", sent.delivery_error
    posted = [r["attachments"] for r in await receiver.replies()]
    assert [(a[0]["filename"], a[0]["content_type"]) for a in posted] == [
        ("photo.png", "image/png"),
        ("invoice.pdf", "application/pdf"),
    ]
    url = posted[1][0]["url"]
    assert url.startswith("https://support.example/media/")
    fetched = await client.get(url.removeprefix("https://support.example"))
    assert fetched.status_code == 200 and fetched.content == PDF


def test_email_carries_each_file_as_a_mime_part(tmp_path: Path) -> None:
    files = []
    for i, (name, ctype, data) in enumerate(
        [("photo.png", "image/png", PNG), ("invoice.pdf", "application/pdf", PDF)]
    ):
        path = tmp_path / name
        path.write_bytes(data)
        files.append(attachments_out.SentFile(i + 1, name, ctype, "file", len(data), str(path)))
    outbound = OutboundMessage(
        message_id=9,
        conversation_id=4,
        channel="email",
        recipient_id="ann@shop.example",
        text="Your invoice",
        attachments=tuple(files),
    )
    settings = EmailSettings.get().model_copy(update={"email_address": "support@example.com"})
    mail = compose(outbound, settings)
    assert mail.get_content_type() == "multipart/mixed"
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == "Your invoice"
    parts = [
        (p.get_filename(), p.get_content_type(), p.get_payload(decode=True))
        for p in mail.iter_attachments()
    ]
    assert parts == [("photo.png", "image/png", PNG), ("invoice.pdf", "application/pdf", PDF)]


async def test_twilio_sends_each_file_as_a_media_url_signed_by_us(
    client: httpx.AsyncClient,
    database: Database,
    sandbox_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for key, value in {
        "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "TWILIO_SMS_FROM": "+15017122661",
        "TWILIO_API_BASE": f"{sandbox_url}/twilio",
        "PUBLIC_URL": "http://127.0.0.1:9",  # status callbacks go nowhere
        "MEDIA_DIR": str(tmp_path / "media"),
    }.items():
        monkeypatch.setenv(f"HELIOGRAPH_{key}", value)
    reset_settings()
    http = httpx.AsyncClient(base_url=sandbox_url, timeout=10)
    await http.delete("/_sandbox/calls")
    try:
        conv = await receive(database, "SM-att", "+14017122661", channel="sms")
        async with database.session() as session:
            message = await reply(
                session, conv.conversation_id, "Your photo", None, attachments=[image()]
            )
            await session.commit()
        sent = await deliver(database, message.id)  # type: ignore[arg-type]
        assert sent.delivery_status in ("sent", "delivered"), sent.delivery_error
        params = {"provider": "twilio", "method": "messages.create"}
        creates = [c["params"] for c in (await http.get("/_sandbox/calls", params=params)).json()]
    finally:
        await http.aclose()
        await twilio_close()
    assert [c.get("Body") for c in creates] == ["Your photo", None]
    media_url = creates[1]["MediaUrl"]
    assert media_url.startswith("http://127.0.0.1:9/media/")
    fetched = await client.get(media_url.removeprefix("http://127.0.0.1:9"))
    assert fetched.status_code == 200 and fetched.content == PNG


async def test_whatsapp_cloud_uploads_the_media_then_sends_it_by_id(
    database: Database, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in {
        "WHATSAPP_ACCESS_TOKEN": WA_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": WA_PHONE_ID,
        "WHATSAPP_APP_SECRET": WA_SECRET,
        "WHATSAPP_API_BASE": f"{sandbox_url}/whatsapp",
        "MEDIA_DIR": str(tmp_path / "media"),
    }.items():
        monkeypatch.setenv(f"HELIOGRAPH_{key}", value)
    reset_settings()
    http = httpx.AsyncClient(base_url=sandbox_url, timeout=10)
    for path in ("/_sandbox/calls", "/_sandbox/whatsapp"):
        await http.delete(path)
    await http.post("/_sandbox/whatsapp/window", json={"wa_id": "16505551234", "hours_ago": 0})
    try:
        body = json.dumps(whatsapp_sample("text", written_ago_s=60)).encode()
        hook = WebhookRequest("POST", "http://x/", {"content-type": "application/json"}, body)
        (stored,) = (await intake.receive(whatsapp_cloud.channel.parse(hook))).accepted
        for files in ([image()], [document()]):
            async with database.session() as session:
                message = await reply(session, stored.conversation_id, "", None, attachments=files)
                await session.commit()
            sent = await deliver(database, message.id)  # type: ignore[arg-type]
            assert sent.delivery_status in ("sent", "delivered"), sent.delivery_error

        async def calls(method: str) -> list[dict[str, Any]]:
            params = {"provider": "whatsapp", "method": method}
            return [c["params"] for c in (await http.get("/_sandbox/calls", params=params)).json()]

        uploads, messages = await calls("media.upload"), await calls("messages")
    finally:
        await http.aclose()
        await whatsapp_cloud.close_client()
    assert [(u["type"], u["filename"], u["size"]) for u in uploads] == [
        ("image/png", "photo.png", len(PNG)),
        ("application/pdf", "invoice.pdf", len(PDF)),
    ]
    assert [m["type"] for m in messages] == ["image", "document"]
    assert messages[0]["image"] == {"id": uploads[0]["id"]}
    assert messages[1]["document"] == {"id": uploads[1]["id"], "filename": "invoice.pdf"}
