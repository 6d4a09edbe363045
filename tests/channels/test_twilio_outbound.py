"""Replies and media through the real ``twilio`` Client against the sandbox's fake Messages
API, which runs as its own process: our number as From, the status callback URL, 1,600-
character parts never resent, 429/5xx retried, 21610 opting the customer out, other refusals
with Twilio's code, STOP and START honoured, WhatsApp templates, media with basic auth."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from channels import twilio
from channels.base import WebhookRequest
from crm_core.models import Identity
from heliograph import jobs
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox import intake
from inbox.conversations import reply
from inbox.media import MediaRef
from inbox.models import Attachment, Message
from sandbox.samples import tiny_png
from tests.utils.jobs import drain
from tests.utils.samples import sample

pytestmark = pytest.mark.slow

ACCOUNT = "AC" + "1" * 32
TOKEN = "test-twilio-auth-token-0123456789"
SMS_FROM = "+15017122661"
WHATSAPP_FROM = "+14155238886"
CUSTOMER = "+14017122661"
CALLBACKS = "http://127.0.0.1:9"  # nothing listens: the fake's status callbacks go nowhere
# 400 words of 9 characters and a space: 3,999 characters, three parts at 1,600.
LONG_REPLY = " ".join(f"word{i:05d}" for i in range(400))


SANDBOX_ENV = {"HELIOGRAPH_TWILIO_ACCOUNT_SID": ACCOUNT, "HELIOGRAPH_TWILIO_AUTH_TOKEN": TOKEN}


class FakeTwilio:
    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)

    async def creates(self) -> list[dict[str, Any]]:
        params = {"provider": "twilio", "method": "messages.create"}
        return [c["params"] for c in (await self.http.get("/_sandbox/calls", params=params)).json()]

    async def script(self, *answers: str) -> None:
        answer = await self.http.post("/_sandbox/twilio/script", json={"answers": list(answers)})
        answer.raise_for_status()

    async def add_media(self, data: bytes, content_type: str) -> str:
        body = {"data_b64": base64.b64encode(data).decode(), "content_type": content_type}
        answer = await self.http.post("/_sandbox/twilio/media", json=body)
        return str(answer.json()["url"])


@pytest.fixture
async def fake(
    sandbox_url: str, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[FakeTwilio]:
    for key, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
        "TWILIO_API_BASE": f"{sandbox_url}/twilio",
        "PUBLIC_URL": CALLBACKS,
        "MEDIA_DIR": str(tmp_path / "media"),
    }.items():
        monkeypatch.setenv(f"HELIOGRAPH_{key}", value)
    reset_settings()
    handle = FakeTwilio(sandbox_url)
    await handle.http.delete("/_sandbox/calls")
    await handle.http.delete("/_sandbox/twilio")
    yield handle
    await handle.http.aclose()
    await twilio.close_client()


async def customer_writes(form: dict[str, str]) -> int:
    """What the webhook does with Twilio's form (signature checks are the webhook tests')."""
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


def settled(database: Database, message_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await message(database, message_id)).delivery_status not in ("queued", "sending")

    return check


async def sms_identity(database: Database) -> Identity:
    async with database.read_session() as session:
        stmt = select(Identity).where(Identity.channel == "sms")
        return (await session.execute(stmt)).scalar_one()


def read(path: str | None) -> bytes:
    """The bytes of a stored attachment (a plain function: file I/O off the async tests)."""
    assert path is not None
    return Path(path).read_bytes()


async def test_an_sms_reply_leaves_from_our_number_with_our_status_callback(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "sms"))
    sent_id = await agent_says(sqlite_database, conversation, "Your order ships today.")
    await drain(sqlite_database, settled(sqlite_database, sent_id))

    (create,) = await fake.creates()
    assert (create["To"], create["From"], create["Body"]) == (
        CUSTOMER,
        SMS_FROM,
        "Your order ships today.",
    )
    assert create["StatusCallback"] == f"{CALLBACKS}/webhooks/twilio/status"
    sent = await message(sqlite_database, sent_id)
    assert (sent.delivery_status, sent.external_id) == ("sent", create["Sid"])


async def test_a_whatsapp_reply_uses_the_whatsapp_addresses(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "whatsapp_text"))
    sent_id = await agent_says(sqlite_database, conversation, "Olá!")
    await drain(sqlite_database, settled(sqlite_database, sent_id))
    (create,) = await fake.creates()
    assert (create["To"], create["From"]) == (f"whatsapp:{CUSTOMER}", f"whatsapp:{WHATSAPP_FROM}")
    assert (await message(sqlite_database, sent_id)).delivery_status == "sent"


async def test_a_long_sms_goes_in_parts_and_a_failed_part_does_not_resend_the_first(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "sms"))
    await fake.script("ok", "500", "429")  # part 1 taken; part 2 fails twice, then goes
    sent_id = await agent_says(sqlite_database, conversation, LONG_REPLY)
    await drain(sqlite_database, settled(sqlite_database, sent_id))

    bodies = [c["Body"] for c in await fake.creates()]
    assert len(bodies) == 3  # each part exactly once
    assert all(len(b) <= 1600 for b in bodies)
    assert " ".join(bodies) == LONG_REPLY
    sent = await message(sqlite_database, sent_id)
    assert sent.delivery_status == "sent"
    assert sent.external_id == (await fake.creates())[0]["Sid"]


async def test_an_unsubscribed_recipient_is_opted_out_and_the_agent_sees_why(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "sms"))
    await fake.script("400:21610")
    sent_id = await agent_says(sqlite_database, conversation, "Hello?")
    await drain(sqlite_database, settled(sqlite_database, sent_id))

    failed = await message(sqlite_database, sent_id)
    assert failed.delivery_status == "failed"
    assert failed.delivery_error is not None and "21610" in failed.delivery_error
    assert "opted out" in failed.delivery_error
    assert (await sms_identity(sqlite_database)).opted_out is True


async def test_another_refusal_fails_the_reply_with_twilios_code_and_message(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "sms"))
    await fake.script("400:21211")
    sent_id = await agent_says(sqlite_database, conversation, "Hello?")
    await drain(sqlite_database, settled(sqlite_database, sent_id))
    failed = await message(sqlite_database, sent_id)
    assert failed.delivery_status == "failed"
    assert failed.delivery_error is not None
    assert "error 21211: Scripted refusal 21211" in failed.delivery_error
    assert (await sms_identity(sqlite_database)).opted_out is False
    assert await fake.creates() == []


async def test_after_stop_nothing_is_sent_and_after_start_replies_go_again(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "sms_stop", MessageSid="SM" + "2" * 32))
    refused_id = await agent_says(sqlite_database, conversation, "Sorry to see you go")
    await drain(sqlite_database, settled(sqlite_database, refused_id))
    refused = await message(sqlite_database, refused_id)
    assert refused.delivery_status == "failed"
    assert refused.delivery_error is not None
    assert "the customer opted out of sms (STOP)" in refused.delivery_error
    assert await fake.creates() == []  # Twilio was never asked

    await customer_writes(sample("twilio", "sms_start", MessageSid="SM" + "3" * 32))
    sent_id = await agent_says(sqlite_database, conversation, "Welcome back!")
    await drain(sqlite_database, settled(sqlite_database, sent_id))
    assert (await message(sqlite_database, sent_id)).delivery_status == "sent"
    assert [c["Body"] for c in await fake.creates()] == ["Welcome back!"]


async def test_a_whatsapp_template_is_sent_by_content_sid_with_its_variables(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    conversation = await customer_writes(sample("twilio", "whatsapp_text"))
    template = "/template HXb5b62575e6e4ff6129ad7c8efe1f983e 'Ada Lovelace' 4521"
    sent_id = await agent_says(sqlite_database, conversation, template)
    refused_id = await agent_says(sqlite_database, conversation, "/template order_update")
    await drain(sqlite_database, settled(sqlite_database, refused_id))

    (create,) = await fake.creates()
    assert create["ContentSid"] == "HXb5b62575e6e4ff6129ad7c8efe1f983e"
    assert json.loads(create["ContentVariables"]) == {"1": "Ada Lovelace", "2": "4521"}
    assert "Body" not in create
    assert (await message(sqlite_database, sent_id)).delivery_status == "sent"
    refused = await message(sqlite_database, refused_id)
    assert refused.delivery_status == "failed"
    assert refused.delivery_error is not None and "Content SID" in refused.delivery_error


async def test_mms_media_is_downloaded_with_the_account_credentials(
    fake: FakeTwilio, sqlite_database: Database
) -> None:
    image = tiny_png()
    url = await fake.add_media(image, "image/png")
    await customer_writes(
        sample(
            "twilio",
            "mms_image",
            MessageSid="MM" + "4" * 32,
            MediaUrl0=url,
            MediaContentType0="image/png",
        )
    )

    async def kept() -> bool:
        async with sqlite_database.read_session() as session:
            return bool((await session.execute(select(Attachment.storage_path))).scalar())

    await drain(sqlite_database, kept)
    async with sqlite_database.read_session() as session:
        (attachment,) = (await session.execute(select(Attachment))).scalars().all()
    assert read(attachment.storage_path) == image
    assert (attachment.size, attachment.content_type) == (len(image), "image/png")


async def test_media_is_refused_with_wrong_credentials_and_never_sent_off_twilio(
    fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await fake.add_media(b"secret scan", "application/pdf")
    ref = MediaRef(1, "sms", url, None, "application/pdf", None)
    assert (await twilio.fetch_media(ref)).data == b"secret scan"

    monkeypatch.setenv("HELIOGRAPH_TWILIO_AUTH_TOKEN", "a-stale-auth-token-000000000000")
    reset_settings()
    with pytest.raises(jobs.PermanentFailure, match="401"):
        await twilio.fetch_media(ref)
    elsewhere = MediaRef(1, "sms", "https://collector.example/Media/ME1", None, None, None)
    with pytest.raises(jobs.PermanentFailure, match="not a Twilio URL"):
        await twilio.fetch_media(elsewhere)
