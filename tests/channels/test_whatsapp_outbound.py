"""Replies and media through the WhatsApp Cloud API client against the sandbox's fake Graph
API, which runs as its own process: the 24-hour window (refused with the time of the
customer's last message, templates allowed), 4,096-character parts, retries, refusals,
media by id, and the provider chosen per conversation when Twilio carries WhatsApp too."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from channels import twilio, whatsapp_cloud
from channels.base import WebhookRequest
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox import intake
from inbox.conversations import reply
from inbox.models import Attachment, Message
from sandbox.samples import tiny_png
from tests.utils.jobs import drain
from tests.utils.samples import whatsapp_sample

pytestmark = pytest.mark.slow

ACCESS_TOKEN = "test-whatsapp-access-token-0123"
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "test-whatsapp-app-secret-0123456789"
TWILIO_ACCOUNT = "AC" + "1" * 32
TWILIO_TOKEN = "test-twilio-auth-token-0123456789"
WA_ID = "16505551234"


SANDBOX_ENV = {
    "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
    "HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
    "HELIOGRAPH_WHATSAPP_APP_SECRET": APP_SECRET,
    "HELIOGRAPH_TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
    "HELIOGRAPH_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
}


class FakeGraph:
    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)

    async def calls(self, provider: str = "whatsapp", method: str = "messages") -> list[Any]:
        params = {"provider": provider, "method": method}
        return [c["params"] for c in (await self.http.get("/_sandbox/calls", params=params)).json()]

    async def add_media(self, data: bytes, mime_type: str) -> str:
        body = {"data_b64": base64.b64encode(data).decode(), "mime_type": mime_type}
        return str((await self.http.post("/_sandbox/whatsapp/media", json=body)).json()["id"])

    async def fail(self, mode: str, seconds: float) -> None:
        body = {"provider": "whatsapp", "mode": mode, "seconds": seconds}
        (await self.http.post("/_sandbox/fail", json=body)).raise_for_status()


@pytest.fixture
async def fake(
    sandbox_url: str, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[FakeGraph]:
    for key, value in {
        "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_API_BASE": f"{sandbox_url}/whatsapp",
        "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "TWILIO_WHATSAPP_FROM": "+14155238886",
        "TWILIO_API_BASE": f"{sandbox_url}/twilio",
        "MEDIA_DIR": str(tmp_path / "media"),
    }.items():
        monkeypatch.setenv(f"HELIOGRAPH_{key}", value)
    reset_settings()
    handle = FakeGraph(sandbox_url)
    for path in ("/_sandbox/calls", "/_sandbox/whatsapp", "/_sandbox/twilio"):
        await handle.http.delete(path)
    await handle.http.delete("/_sandbox/fail", params={"provider": "whatsapp"})
    # The fake's own window: this customer wrote a minute ago (the product checks its own).
    await handle.http.post("/_sandbox/whatsapp/window", json={"wa_id": WA_ID, "hours_ago": 0})
    yield handle
    await handle.http.aclose()
    await whatsapp_cloud.close_client()
    await twilio.close_client()


async def customer_writes(payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    hook = WebhookRequest("POST", "http://x/", {"content-type": "application/json"}, body)
    (stored,) = (await intake.receive(whatsapp_cloud.channel.parse(hook))).accepted
    return stored.conversation_id


async def customer_writes_through_twilio() -> int:
    form = {
        "MessageSid": "SM" + "5" * 32,
        "AccountSid": TWILIO_ACCOUNT,
        "From": f"whatsapp:+{WA_ID}",
        "To": "whatsapp:+14155238886",
        "Body": "Hi, via Twilio",
        "NumMedia": "0",
    }
    body = urlencode(form).encode()
    hook = WebhookRequest("POST", "http://x/", {"content-type": twilio.FORM_TYPE}, body)
    (stored,) = (await intake.receive(twilio.channel.parse(hook))).accepted
    return stored.conversation_id


async def agent_says(database: Database, conversation_id: int, text: str) -> int:
    async with database.session() as session:
        message = await reply(session, conversation_id, text, author_id=None)
        await session.commit()
    return message.id  # type: ignore[return-value]


async def message(database: Database, message_id: int) -> Message:
    async with database.read_session() as session:
        found = await session.get(Message, message_id)
    assert found is not None
    return found


async def deliver(database: Database, conversation_id: int, text: str) -> Message:
    message_id = await agent_says(database, conversation_id, text)

    async def settled() -> bool:
        status = (await message(database, message_id)).delivery_status
        return status not in ("queued", "sending")

    await drain(database, settled)
    return await message(database, message_id)


def read(path: str | None) -> bytes:
    """The bytes of a stored attachment (a plain function: file I/O off the async tests)."""
    assert path is not None
    return Path(path).read_bytes()


async def test_a_reply_inside_the_window_is_sent_as_text(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    conversation = await customer_writes(whatsapp_sample("text", written_ago_s=60))
    sent = await deliver(sqlite_database, conversation, "Yes: blue and red.")

    (call,) = await fake.calls()
    assert call["version"] == "v24.0"
    assert (call["messaging_product"], call["recipient_type"], call["to"]) == (
        "whatsapp",
        "individual",
        WA_ID,
    )
    assert (call["type"], call["text"]["body"]) == ("text", "Yes: blue and red.")
    assert (sent.delivery_status, sent.external_id) == ("sent", call["id"])


async def test_outside_the_window_a_free_form_reply_is_refused_with_the_last_message_time(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    conversation = await customer_writes(whatsapp_sample("text"))  # June 2025
    refused = await deliver(sqlite_database, conversation, "Are you still there?")

    assert refused.delivery_status == "failed"
    last = datetime.fromtimestamp(1749416383, UTC)
    assert refused.delivery_error is not None
    assert "24-hour customer-service window" in refused.delivery_error
    assert f"last wrote at {last:%Y-%m-%d %H:%M} UTC" in refused.delivery_error
    assert "/template NAME" in refused.delivery_error
    assert await fake.calls() == []  # Meta was never asked


async def test_outside_the_window_an_approved_template_goes_out(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    conversation = await customer_writes(whatsapp_sample("text"))
    text = '/template order_update pt_BR "Sheena Nelson" 4521'
    sent = await deliver(sqlite_database, conversation, text)

    assert sent.delivery_status == "sent"
    (call,) = await fake.calls()
    assert call["type"] == "template"
    assert call["template"] == {
        "name": "order_update",
        "language": {"code": "pt_BR"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Sheena Nelson"},
                    {"type": "text", "text": "4521"},
                ],
            }
        ],
    }


async def test_a_long_reply_goes_in_parts_of_4096_characters(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    conversation = await customer_writes(whatsapp_sample("text", written_ago_s=60))
    text = " ".join(f"word{i:05d}" for i in range(600))  # 5,999 characters
    sent = await deliver(sqlite_database, conversation, text)
    bodies = [c["text"]["body"] for c in await fake.calls()]
    assert [len(b) <= 4096 for b in bodies] == [True, True]
    assert " ".join(bodies) == text
    assert sent.delivery_status == "sent"


async def test_an_outage_is_retried_until_the_reply_goes_once(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    conversation = await customer_writes(whatsapp_sample("text", written_ago_s=60))
    await fake.fail("500", seconds=1.0)
    sent = await deliver(sqlite_database, conversation, "After the outage")
    assert sent.delivery_status == "sent"
    assert [c["text"]["body"] for c in await fake.calls()] == ["After the outage"]


async def test_a_refused_token_fails_the_reply_with_metas_error(
    fake: FakeGraph, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = await customer_writes(whatsapp_sample("text", written_ago_s=60))
    monkeypatch.setenv("HELIOGRAPH_WHATSAPP_ACCESS_TOKEN", "an-expired-access-token-000000")
    reset_settings()
    failed = await deliver(sqlite_database, conversation, "Hello")
    assert failed.delivery_status == "failed"
    assert failed.delivery_error is not None
    assert (
        "WhatsApp refused the message: error 190: Invalid OAuth access token"
        in failed.delivery_error
    )


async def test_media_is_fetched_by_id_with_the_bearer_token(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    image = tiny_png()
    media_id = await fake.add_media(image, "image/png")
    payload = whatsapp_sample("image", written_ago_s=60)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["id"] = media_id
    await customer_writes(payload)

    async def kept() -> bool:
        async with sqlite_database.read_session() as session:
            return bool((await session.execute(select(Attachment.storage_path))).scalar())

    await drain(sqlite_database, kept)
    async with sqlite_database.read_session() as session:
        (attachment,) = (await session.execute(select(Attachment))).scalars().all()
    assert read(attachment.storage_path) == image
    assert attachment.content_type == "image/jpeg"  # what the webhook said it was
    assert [c["id"] for c in await fake.calls(method="media")] == [media_id]


async def test_each_reply_goes_through_the_provider_the_customer_last_wrote_through(
    fake: FakeGraph, sqlite_database: Database
) -> None:
    conversation = await customer_writes_through_twilio()
    via_twilio = await deliver(sqlite_database, conversation, "Answer through Twilio")
    assert via_twilio.delivery_status == "sent"
    (create,) = await fake.calls("twilio", "messages.create")
    assert (create["To"], create["Body"]) == (f"whatsapp:+{WA_ID}", "Answer through Twilio")
    assert await fake.calls() == []

    assert (
        await customer_writes(whatsapp_sample("text", written_ago_s=60)) == conversation
    )  # same customer, same thread
    via_cloud = await deliver(sqlite_database, conversation, "Answer through the Cloud API")
    assert via_cloud.delivery_status == "sent"
    assert [c["text"]["body"] for c in await fake.calls()] == ["Answer through the Cloud API"]
    assert len(await fake.calls("twilio", "messages.create")) == 1
