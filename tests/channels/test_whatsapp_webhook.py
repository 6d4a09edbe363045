"""Meta's WhatsApp Cloud API webhook, in process: one test per recorded payload, replays,
statuses, the verification handshake and the refusals.

The fixtures in ``tests/fixtures/whatsapp/`` are the examples of Meta's webhook reference
(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages):
``text``, ``image`` and ``document`` verbatim from the text, image and document pages;
``status_sent`` and ``status_failed`` (131049) verbatim from the status page, whose "read"
example is the sent one with the status changed (as ``status_read`` is here);
``audio_voice`` is the audio page's syntax filled with the sample values of its parameter
table (``voice: true``); ``status_failed_window`` is the failed example carrying error 131047
as the error-codes page describes it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from crm_core.models import ContactPoint, Customer, Identity
from heliograph.db import Database
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import reply
from inbox.models import Attachment, Conversation, Message
from tests.utils.db import count, rows
from tests.utils.http import PUBLIC, post_whatsapp, post_whatsapp_twice, whatsapp_signature
from tests.utils.http import WHATSAPP_APP_SECRET as APP_SECRET
from tests.utils.samples import whatsapp_sample

VERIFY_TOKEN = "test-whatsapp-verify-token-0123"
PHONE_NUMBER_ID = "106540352242922"
CUSTOMER = "+16505551234"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
TWILIO_TOKEN = "test-twilio-auth-token-0123456789"
# Refusals and keyword variants exercise no SQL of their own: SQLite is enough for them.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def value_of(payload: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = payload["entry"][0]["changes"][0]["value"]
    return found


@pytest.fixture(autouse=True)
def whatsapp_enabled(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIOGRAPH_WHATSAPP_ACCESS_TOKEN", "test-whatsapp-access-token-0123")
    monkeypatch.setenv("HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID", PHONE_NUMBER_ID)
    monkeypatch.setenv("HELIOGRAPH_WHATSAPP_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("HELIOGRAPH_WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TWILIO_ACCOUNT_SID", "AC" + "X" * 32)
    monkeypatch.setenv("HELIOGRAPH_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    monkeypatch.setenv("HELIOGRAPH_PUBLIC_URL", PUBLIC)
    reset_settings()


STORED_ONCE = [
    {"stored": 1, "duplicates": 0, "statuses": 0, "unknown_statuses": []},
    {"stored": 0, "duplicates": 1, "statuses": 0, "unknown_statuses": []},
]


async def nothing_stored(database: Database) -> bool:
    counts = [await count(database, m) for m in (Message, Customer, Conversation, Identity)]
    return counts == [0, 0, 0, 0]


async def only_message(database: Database) -> Message:
    (message,) = await rows(database, Message)
    return message


# --- one test per fixture -----------------------------------------------------------------


async def test_text_message_is_stored_once_under_the_customers_number(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("text")
    assert await post_whatsapp_twice(client, payload) == STORED_ONCE

    message = await only_message(database)
    assert (message.channel, message.direction) == ("whatsapp", "in")
    assert (message.text, message.provider_message_id) == ("Does it come in another color?", WAMID)
    assert message.sent_at == datetime.fromtimestamp(1749416383, UTC)
    assert message.raw == payload  # one message: its narrowed envelope is the whole webhook
    (identity,) = await rows(database, Identity)
    assert (identity.channel, identity.external_id) == ("whatsapp", CUSTOMER)
    (customer,) = await rows(database, Customer)
    assert (customer.display_name, customer.id) == ("Sheena Nelson", identity.customer_id)
    (contact,) = await rows(database, ContactPoint)
    assert (contact.kind, contact.value) == ("phone", CUSTOMER)


async def test_image_with_caption_is_fetched_by_media_id(
    client: httpx.AsyncClient, database: Database
) -> None:
    assert await post_whatsapp_twice(client, whatsapp_sample("image")) == STORED_ONCE
    message = await only_message(database)
    assert message.text == "Taj Mahal"
    (attachment,) = await rows(database, Attachment)
    assert (attachment.kind, attachment.content_type) == ("image", "image/jpeg")
    assert (attachment.provider_file_id, attachment.url) == ("1003383421387256", None)
    assert await count(database, Job, Job.kind == "attachment.fetch") == 1


async def test_document_keeps_its_filename_and_caption(
    client: httpx.AsyncClient, database: Database
) -> None:
    assert await post_whatsapp_twice(client, whatsapp_sample("document")) == STORED_ONCE
    message = await only_message(database)
    assert message.text == "my receipt"
    (attachment,) = await rows(database, Attachment)
    assert (attachment.kind, attachment.filename) == ("file", "receipt.pdf")
    assert (attachment.content_type, attachment.provider_file_id) == (
        "application/pdf",
        "622684793477189",
    )


async def test_voice_note_is_an_audio_attachment(
    client: httpx.AsyncClient, database: Database
) -> None:
    assert await post_whatsapp_twice(client, whatsapp_sample("audio_voice")) == STORED_ONCE
    message = await only_message(database)
    assert message.text == ""
    (attachment,) = await rows(database, Attachment)
    assert (attachment.kind, attachment.content_type) == ("audio", "audio/ogg; codecs=opus")
    assert attachment.provider_file_id == "1003383421387256"
    assert await count(database, Job, Job.kind == "attachment.fetch") == 1


async def sent_reply(database: Database, external_id: str) -> int:
    async with database.session() as session:
        customer = Customer(display_name="Sheena Nelson")
        session.add(customer)
        await session.flush()
        conversation = Conversation(customer_id=customer.id, channel="whatsapp")  # type: ignore[arg-type]
        session.add(conversation)
        await session.flush()
        message = await reply(session, conversation.id, "Yes: blue and red.", author_id=None)  # type: ignore[arg-type]
        message.external_id, message.delivery_status = external_id, "sent"
        await session.commit()
        return message.id  # type: ignore[return-value]


async def status_of(database: Database, message_id: int) -> tuple[str, str | None]:
    async with database.read_session() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message.delivery_status, message.delivery_error


async def test_sent_and_read_statuses_move_the_reply_forward(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("status_sent")
    message_id = await sent_reply(database, value_of(payload)["statuses"][0]["id"])
    answer = await post_whatsapp(client, whatsapp_sample("status_read"))
    assert answer.json() == {"stored": 0, "duplicates": 0, "statuses": 1, "unknown_statuses": []}
    assert await status_of(database, message_id) == ("read", None)
    await post_whatsapp(client, payload)  # the late "sent" does not step back
    assert await status_of(database, message_id) == ("read", None)


async def test_a_failed_status_shows_metas_error_on_the_reply(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("status_failed")
    message_id = await sent_reply(database, value_of(payload)["statuses"][0]["id"])
    await post_whatsapp(client, payload)
    status, error = await status_of(database, message_id)
    assert status == "failed"
    assert error is not None and error.startswith("WhatsApp error 131049 (This message was not")


async def test_a_re_engagement_failure_says_the_window_closed(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("status_failed_window")
    message_id = await sent_reply(database, value_of(payload)["statuses"][0]["id"])
    await post_whatsapp(client, payload)
    status, error = await status_of(database, message_id)
    assert status == "failed"
    assert error is not None and "131047" in error and "more than 24 hours" in error


@SQLITE_ONLY
async def test_statuses_for_messages_we_never_sent_are_reported(
    client: httpx.AsyncClient, database: Database
) -> None:
    answer = await post_whatsapp(client, whatsapp_sample("status_sent"))
    assert answer.status_code == 200
    assert answer.json()["unknown_statuses"] == [
        value_of(whatsapp_sample("status_sent"))["statuses"][0]["id"]
    ]


# --- batches, other numbers, consent, one WhatsApp across providers ---------------------------


async def test_a_batch_of_messages_from_two_customers_stores_both(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("text")
    value = value_of(payload)
    second = {
        **value["messages"][0],
        "from": "447700900123",
        "id": "wamid.second",
        "text": {"body": "Hi"},
    }
    value["contacts"].append({"profile": {"name": "Ann"}, "wa_id": "447700900123"})
    value["messages"].append(second)
    answer = await post_whatsapp(client, payload)
    assert answer.json()["stored"] == 2
    identities = {i.external_id for i in await rows(database, Identity)}
    assert identities == {CUSTOMER, "+447700900123"}
    ann = next(m for m in await rows(database, Message) if m.provider_message_id == "wamid.second")
    assert value_of(ann.raw)["contacts"] == [{"profile": {"name": "Ann"}, "wa_id": "447700900123"}]
    assert value_of(ann.raw)["messages"] == [second]


@SQLITE_ONLY
async def test_messages_to_another_business_number_are_not_ours(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("text")
    value_of(payload)["metadata"]["phone_number_id"] = "999999999999999"
    answer = await post_whatsapp(client, payload)
    assert answer.status_code == 200
    assert await nothing_stored(database)


@SQLITE_ONLY
async def test_stop_on_whatsapp_opts_the_customer_out(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("text")
    value_of(payload)["messages"][0]["text"]["body"] = "STOP"
    await post_whatsapp(client, payload)
    (identity,) = await rows(database, Identity)
    assert identity.opted_out is True
    assert (await only_message(database)).text == "STOP"


async def test_twilio_and_cloud_messages_from_one_phone_share_one_whatsapp_conversation(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": "AC" + "X" * 32,
        "From": "whatsapp:" + CUSTOMER,
        "To": "whatsapp:+14155238886",
        "Body": "Hello through Twilio",
        "NumMedia": "0",
        "ProfileName": "Sheena Nelson",
        "WaId": CUSTOMER.lstrip("+"),
    }
    url = PUBLIC + "/webhooks/twilio/messages"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, form),
    }
    answer = await client.post(
        "/webhooks/twilio/messages", content=urlencode(form), headers=headers
    )
    assert answer.status_code == 200, answer.text
    await post_whatsapp(client, whatsapp_sample("text"))

    (identity,) = await rows(database, Identity)
    assert (identity.channel, identity.external_id) == ("whatsapp", CUSTOMER)
    (conversation,) = await rows(database, Conversation)
    texts = [m.text for m in await rows(database, Message)]
    assert texts == ["Hello through Twilio", "Does it come in another color?"]
    assert conversation.channel == "whatsapp"


# --- the verification handshake ------------------------------------------------------------


@SQLITE_ONLY
async def test_the_verify_handshake_echoes_the_challenge(
    client: httpx.AsyncClient, database: Database
) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": VERIFY_TOKEN,
    }
    answer = await client.get("/webhooks/whatsapp", params=params)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    assert answer.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "guess"}, 403),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, 403),
        ({"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": VERIFY_TOKEN}, 400),
    ],
)
@SQLITE_ONLY
async def test_a_handshake_with_the_wrong_token_is_refused(
    client: httpx.AsyncClient, database: Database, params: dict[str, str], status: int
) -> None:
    answer = await client.get("/webhooks/whatsapp", params=params)
    assert answer.status_code == status
    assert "1" != answer.text
    assert await nothing_stored(database)


# --- refusals: status code, and nothing stored ------------------------------------------------


@SQLITE_ONLY
async def test_a_missing_or_wrong_signature_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = json.dumps(whatsapp_sample("text")).encode()
    missing = await client.post(
        "/webhooks/whatsapp", content=body, headers={"Content-Type": "application/json"}
    )
    assert missing.status_code == 403
    wrong = await post_whatsapp(
        client, body, signature=whatsapp_signature(body, "another-apps-secret-000000")
    )
    assert wrong.status_code == 403
    tampered = body.replace(b"another color", b"a refund to me")
    assert (
        await post_whatsapp(client, tampered, signature=whatsapp_signature(body))
    ).status_code == 403
    assert await nothing_stored(database)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"object": "whatsapp_business_account", "entry": [', 400),
        (b"\xff\xfe not json", 400),
        (json.dumps({"object": "whatsapp_business_account", "entry": {"id": 1}}).encode(), 422),
        (json.dumps({"entry": []}).encode(), 422),
    ],
)
@SQLITE_ONLY
async def test_a_signed_but_malformed_body_is_refused_with_a_reason(
    client: httpx.AsyncClient, database: Database, body: bytes, status: int
) -> None:
    answer = await post_whatsapp(client, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]
    assert await nothing_stored(database)


@SQLITE_ONLY
async def test_a_message_missing_its_id_is_a_422(
    client: httpx.AsyncClient, database: Database
) -> None:
    payload = whatsapp_sample("text")
    del value_of(payload)["messages"][0]["id"]
    answer = await post_whatsapp(client, payload)
    assert answer.status_code == 422
    assert "id" in answer.json()["error"]
    assert await nothing_stored(database)


@SQLITE_ONLY
def test_window_is_measured_from_the_customers_last_message() -> None:
    from channels.whatsapp_cloud import check_window
    from inbox.outbox import DeliveryRefused

    payload = whatsapp_sample("text")
    value_of(payload)["messages"][0]["timestamp"] = str(int(time.time()) - 23 * 3600)
    check_window(payload)  # 23 hours: still open
    value_of(payload)["messages"][0]["timestamp"] = str(int(time.time()) - 25 * 3600)
    with pytest.raises(DeliveryRefused, match="25 hours ago"):
        check_window(payload)
    with pytest.raises(DeliveryRefused, match="has not written to this WhatsApp number"):
        check_window(None)
