"""Twilio's webhooks, in process: one test per recorded form, replays, consent, refusals.

The fixtures in ``tests/fixtures/twilio/`` are Twilio's documented request parameters with the
example values of its tables: the incoming-message webhook
(https://www.twilio.com/docs/messaging/guides/webhook-request: MessageSid, AccountSid, From,
To, Body, NumMedia, MediaContentType0, MediaUrl0, the geographic fields, and for WhatsApp
ProfileName, WaId, MessageType), ``OptOutType`` of Advanced Opt-Out
(https://help.twilio.com/articles/360034798533) and the status callback
(https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks:
MessageStatus, ErrorCode; ChannelPrefix and EventType for WhatsApp). Twilio masks its SIDs
with X's; tests that need two different messages give the second one its own SID.

Every request is signed the way Twilio signs, for the public URL (HELIOGRAPH_PUBLIC_URL is an
https URL on another host than the test client's, as behind a proxy).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import ContactPoint, Customer, Identity
from heliograph.db import Database
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import reply
from inbox.models import Attachment, Conversation, Message
from tests.utils.db import count, rows
from tests.utils.factories import member_with_token
from tests.utils.http import PUBLIC, post_twilio, post_twilio_twice, twilio_signature
from tests.utils.http import TWILIO_FORM as FORM
from tests.utils.http import TWILIO_MESSAGES as MESSAGES
from tests.utils.http import TWILIO_TOKEN as TOKEN
from tests.utils.jobs import run_jobs
from tests.utils.samples import sample

ACCOUNT = "AC" + "X" * 32
STATUS = "/webhooks/twilio/status"
CUSTOMER = "+14017122661"
# Refusals and keyword variants exercise no SQL of their own: SQLite is enough for them.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def sid(n: int, prefix: str = "SM") -> str:
    return f"{prefix}{n:032d}"


@pytest.fixture(autouse=True)
def twilio_enabled(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIOGRAPH_TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("HELIOGRAPH_TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TWILIO_SMS_FROM", "+15017122661")
    monkeypatch.setenv("HELIOGRAPH_TWILIO_WHATSAPP_FROM", "+14155238886")
    monkeypatch.setenv("HELIOGRAPH_PUBLIC_URL", PUBLIC)
    reset_settings()


async def nothing_stored(database: Database) -> bool:
    counts = [await count(database, m) for m in (Message, Customer, Conversation, Identity)]
    return counts == [0, 0, 0, 0]


async def identity(database: Database, channel: str) -> Identity:
    async with database.read_session() as session:
        stmt = select(Identity).where(Identity.channel == channel)
        return (await session.execute(stmt)).scalar_one()


# --- one test per fixture -----------------------------------------------------------------


async def test_sms_is_stored_once_under_the_senders_number(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = sample("twilio", "sms")
    await post_twilio_twice(client, form)

    (message,) = await rows(database, Message)
    assert (message.channel, message.direction) == ("sms", "in")
    assert message.text == "Ahoy! We can't wait to see what you build."
    assert message.provider_message_id == form["MessageSid"]
    assert message.raw == form
    (ident,) = await rows(database, Identity)
    assert (ident.channel, ident.external_id, ident.opted_out) == ("sms", CUSTOMER, False)
    (contact,) = await rows(database, ContactPoint)
    assert (contact.kind, contact.value, contact.customer_id) == (
        "phone",
        CUSTOMER,
        ident.customer_id,
    )
    (conversation,) = await rows(database, Conversation)
    assert (conversation.channel, conversation.customer_id) == ("sms", ident.customer_id)


async def test_mms_image_becomes_an_attachment_fetched_once(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = sample("twilio", "mms_image")
    await post_twilio_twice(client, form)

    (message,) = await rows(database, Message)
    assert (message.channel, message.text) == ("sms", "")
    (attachment,) = await rows(database, Attachment)
    assert attachment.message_id == message.id
    assert (attachment.kind, attachment.content_type) == ("image", "image/jpeg")
    assert attachment.url == form["MediaUrl0"]
    assert attachment.provider_file_id == "ME" + "X" * 32
    assert await count(database, Job, Job.kind == "attachment.fetch") == 1


async def test_whatsapp_sender_writes_on_the_whatsapp_channel_with_a_profile_name(
    client: httpx.AsyncClient, database: Database
) -> None:
    await post_twilio_twice(client, sample("twilio", "whatsapp_text"))

    (message,) = await rows(database, Message)
    assert (message.channel, message.text) == (
        "whatsapp",
        "Ahoy! We can't wait to see what you build.",
    )
    (ident,) = await rows(database, Identity)
    assert (ident.channel, ident.external_id) == ("whatsapp", CUSTOMER)  # no "whatsapp:" prefix
    (customer,) = await rows(database, Customer)
    assert customer.display_name == "Perry"


async def test_whatsapp_voice_note_becomes_an_audio_attachment(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = sample("twilio", "whatsapp_voice")
    await post_twilio_twice(client, form)

    (message,) = await rows(database, Message)
    assert (message.channel, message.text) == ("whatsapp", "")
    (attachment,) = await rows(database, Attachment)
    assert (attachment.kind, attachment.content_type) == ("audio", "audio/ogg")
    assert attachment.url == form["MediaUrl0"]
    assert await count(database, Job, Job.kind == "attachment.fetch") == 1


async def test_stop_opts_the_number_out_and_the_keyword_stays_on_the_conversation(
    client: httpx.AsyncClient, database: Database
) -> None:
    await post_twilio(client, sample("twilio", "sms", MessageSid=sid(1)))
    await post_twilio_twice(client, sample("twilio", "sms_stop", MessageSid=sid(2)))

    assert (await identity(database, "sms")).opted_out is True
    texts = [m.text for m in await rows(database, Message)]
    assert texts == ["Ahoy! We can't wait to see what you build.", "STOP"]


async def test_start_opts_back_in_and_a_replayed_old_stop_changes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    stop = sample("twilio", "sms_stop", MessageSid=sid(1))
    await post_twilio(client, stop)
    await post_twilio(client, sample("twilio", "sms_start", MessageSid=sid(2)))
    assert (await identity(database, "sms")).opted_out is False

    await post_twilio(client, stop)  # Twilio retrying the old STOP after the START
    assert (await identity(database, "sms")).opted_out is False
    assert await count(database, Message) == 2


@pytest.mark.parametrize("word", ["stop", " Unsubscribe ", "CANCEL", "end", "QUIT", "stopall"])
@SQLITE_ONLY
async def test_every_opt_out_keyword_counts_without_twilios_opt_out_type(
    client: httpx.AsyncClient, database: Database, word: str
) -> None:
    await post_twilio(
        client, sample("twilio", "whatsapp_text", Body=word)
    )  # WhatsApp: Twilio sends no OptOutType
    assert (await identity(database, "whatsapp")).opted_out is True


@SQLITE_ONLY
async def test_a_sentence_containing_stop_is_not_an_opt_out(
    client: httpx.AsyncClient, database: Database
) -> None:
    await post_twilio(client, sample("twilio", "sms", Body="Please don't stop the delivery"))
    assert (await identity(database, "sms")).opted_out is False


# --- status callbacks -----------------------------------------------------------------------


async def sent_reply(database: Database, channel: str, external_id: str) -> int:
    """A reply Twilio accepted: stored, handed over, its SID recorded."""
    async with database.session() as session:
        session.add(Customer(display_name="Perry"))
        await session.flush()
        customer = (await session.execute(select(Customer))).scalar_one()
        conversation = Conversation(customer_id=customer.id, channel=channel)  # type: ignore[arg-type]
        session.add(conversation)
        await session.flush()
        message = await reply(session, conversation.id, "Your order ships today.", author_id=None)  # type: ignore[arg-type]
        message.external_id, message.delivery_status = external_id, "sent"
        await session.commit()
        return message.id  # type: ignore[return-value]


async def status_of(database: Database, message_id: int) -> tuple[str, str | None]:
    async with database.read_session() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message.delivery_status, message.delivery_error


async def test_sent_then_delivered_callbacks_move_the_reply_forward(
    client: httpx.AsyncClient, database: Database
) -> None:
    message_id = await sent_reply(database, "sms", "SM" + "X" * 32)
    answer = await post_twilio(client, sample("twilio", "status_delivered"), STATUS)
    assert (answer.status_code, answer.json()) == (200, {"applied": 1, "unknown": []})
    assert await status_of(database, message_id) == ("delivered", None)

    await post_twilio(
        client, sample("twilio", "status_sent"), STATUS
    )  # late and out of order: no step back
    assert await status_of(database, message_id) == ("delivered", None)


async def test_undelivered_shows_twilios_error_code_on_the_reply(
    client: httpx.AsyncClient, database: Database
) -> None:
    message_id = await sent_reply(database, "sms", "SM" + "X" * 32)
    await post_twilio(client, sample("twilio", "status_undelivered"), STATUS)
    status, error = await status_of(database, message_id)
    assert status == "failed"
    assert error == "Twilio error 30003: unreachable destination handset"


async def test_whatsapp_read_receipt_marks_the_reply_read(
    client: httpx.AsyncClient, database: Database
) -> None:
    message_id = await sent_reply(database, "whatsapp", "SM" + "X" * 32)
    await post_twilio(client, sample("twilio", "status_whatsapp_read"), STATUS)
    assert await status_of(database, message_id) == ("read", None)


@SQLITE_ONLY
async def test_a_status_for_a_message_we_never_sent_is_acknowledged_and_reported(
    client: httpx.AsyncClient, database: Database
) -> None:
    answer = await post_twilio(client, sample("twilio", "status_delivered"), STATUS)
    assert (answer.status_code, answer.json()) == (
        200,
        {"applied": 0, "unknown": ["SM" + "X" * 32]},
    )


# --- refusals: status code, and nothing stored ------------------------------------------------


@SQLITE_ONLY
async def test_a_missing_signature_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    answer = await client.post(
        MESSAGES, content=urlencode(sample("twilio", "sms")), headers={"Content-Type": FORM}
    )
    assert answer.status_code == 403
    assert "X-Twilio-Signature" in answer.json()["error"]
    assert await nothing_stored(database)


@SQLITE_ONLY
async def test_a_signature_with_another_token_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = sample("twilio", "sms")
    bad = twilio_signature(PUBLIC + MESSAGES, form, token="someone-elses-auth-token-000000")
    headers = {"Content-Type": FORM, "X-Twilio-Signature": bad}
    answer = await client.post(MESSAGES, content=urlencode(form), headers=headers)
    assert answer.status_code == 403
    assert await nothing_stored(database)


@pytest.mark.parametrize(
    "signed_for",
    [
        "http://testserver" + MESSAGES,  # the URL the app sees behind the proxy, not Twilio's
        "https://attacker.example" + MESSAGES,
        PUBLIC + STATUS,  # a valid request for another endpoint, replayed here
        PUBLIC + MESSAGES + "?tenant=eu",
    ],
)
@SQLITE_ONLY
async def test_a_signature_made_for_another_url_is_refused(
    client: httpx.AsyncClient, database: Database, signed_for: str
) -> None:
    answer = await post_twilio(client, sample("twilio", "sms"), signed_for=signed_for)
    assert answer.status_code == 403, answer.text
    assert PUBLIC + MESSAGES in answer.json()["error"]
    assert await nothing_stored(database)


@SQLITE_ONLY
async def test_the_query_string_is_part_of_the_signed_url(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = sample("twilio", "sms")
    url = PUBLIC + MESSAGES + "?tenant=eu&x=a%20b"
    headers = {"Content-Type": FORM, "X-Twilio-Signature": twilio_signature(url, form)}
    answer = await client.post(
        MESSAGES + "?tenant=eu&x=a%20b", content=urlencode(form), headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert await count(database, Message) == 1


@SQLITE_ONLY
async def test_a_public_url_with_a_path_prefix_is_what_twilio_signed(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_PUBLIC_URL", "https://example.com/helio/")
    reset_settings()
    form = sample("twilio", "sms")
    answer = await post_twilio(client, form, signed_for="https://example.com/helio" + MESSAGES)
    assert answer.status_code == 200, answer.text
    again = await post_twilio(client, form, signed_for=PUBLIC + MESSAGES)
    assert again.status_code == 403  # the old public URL no longer counts
    assert await count(database, Message) == 1


@SQLITE_ONLY
async def test_a_tampered_body_is_refused(client: httpx.AsyncClient, database: Database) -> None:
    form = sample("twilio", "sms")
    headers = {
        "Content-Type": FORM,
        "X-Twilio-Signature": twilio_signature(PUBLIC + MESSAGES, form),
    }
    tampered = urlencode({**form, "Body": "send the refund to me"})
    answer = await client.post(MESSAGES, content=tampered, headers=headers)
    assert answer.status_code == 403
    assert await nothing_stored(database)


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({k: v for k, v in sample("twilio", "sms").items() if k != "From"}, "From"),
        ({k: v for k, v in sample("twilio", "sms").items() if k != "MessageSid"}, "MessageSid"),
        (sample("twilio", "sms", From="not-a-number"), "not a phone number"),
        (sample("twilio", "mms_image", NumMedia="two"), "NumMedia"),
        ({k: v for k, v in sample("twilio", "mms_image").items() if k != "MediaUrl0"}, "MediaUrl0"),
    ],
)
@SQLITE_ONLY
async def test_a_signed_but_malformed_form_is_a_400(
    client: httpx.AsyncClient, database: Database, form: dict[str, str], problem: str
) -> None:
    answer = await post_twilio(client, form)
    assert answer.status_code == 400, answer.text
    assert problem in answer.json()["error"]
    assert await nothing_stored(database)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"MessageSid=SM1&&From=", FORM),  # an empty field: not a form Twilio would send
        (b"Body=%FF%FE&From=%2B1", FORM),  # not UTF-8
        (json.dumps(sample("twilio", "sms")).encode(), "application/json"),
    ],
)
@SQLITE_ONLY
async def test_a_body_that_is_not_twilios_form_is_a_400(
    client: httpx.AsyncClient, database: Database, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type, "X-Twilio-Signature": "c2lnbmVk"}
    answer = await client.post(MESSAGES, content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert await nothing_stored(database)


@SQLITE_ONLY
async def test_nothing_is_accepted_while_twilio_is_not_configured(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELIOGRAPH_TWILIO_AUTH_TOKEN")
    reset_settings()
    answer = await post_twilio(client, sample("twilio", "sms"))
    assert answer.status_code == 403
    assert await nothing_stored(database)


@SQLITE_ONLY
async def test_a_malformed_status_callback_is_a_400(
    client: httpx.AsyncClient, database: Database
) -> None:
    form = {
        k: v
        for k, v in sample("twilio", "status_delivered").items()
        if k not in ("MessageStatus", "SmsStatus")
    }
    answer = await post_twilio(client, form, STATUS)
    assert answer.status_code == 400
    bad = await client.post(
        STATUS,
        content=urlencode(sample("twilio", "status_delivered")),
        headers={"Content-Type": FORM},
    )
    assert bad.status_code == 403


# --- one person across channels ------------------------------------------------------------------


async def test_whatsapp_then_sms_from_one_phone_is_one_customer_with_both_conversations(
    client: httpx.AsyncClient, database: Database
) -> None:
    await post_twilio(
        client, sample("twilio", "whatsapp_text", MessageSid=sid(1), Body="Hi on WhatsApp")
    )
    await post_twilio(client, sample("twilio", "sms", MessageSid=sid(2), Body="And now by SMS"))

    (customer,) = await rows(database, Customer)
    identities = {(i.channel, i.external_id, i.customer_id) for i in await rows(database, Identity)}
    assert identities == {("whatsapp", CUSTOMER, customer.id), ("sms", CUSTOMER, customer.id)}
    conversations = await rows(database, Conversation)
    assert sorted(c.channel for c in conversations) == ["sms", "whatsapp"]

    _, auth = await member_with_token(database)
    answer = await client.get(f"/api/v1/customers/{customer.id}/timeline", headers=auth)
    assert answer.status_code == 200, answer.text
    messages = [e for e in answer.json()["entries"] if e["kind"] == "message.in"]
    assert {(e["summary"], e["data"]["channel"]) for e in messages} == {
        ("Hi on WhatsApp", "whatsapp"),
        ("And now by SMS", "sms"),
    }
    opened = {
        e["conversation_id"] for e in answer.json()["entries"] if e["kind"] == "conversation.opened"
    }
    assert opened == {c.id for c in conversations}


@SQLITE_ONLY
async def test_stop_on_sms_leaves_the_same_customers_whatsapp_alone(
    client: httpx.AsyncClient, database: Database
) -> None:
    await post_twilio(client, sample("twilio", "whatsapp_text", MessageSid=sid(1)))
    await post_twilio(client, sample("twilio", "sms_stop", MessageSid=sid(2)))
    assert (await identity(database, "sms")).opted_out is True
    assert (await identity(database, "whatsapp")).opted_out is False


@SQLITE_ONLY
async def test_a_reply_to_an_opted_out_number_fails_with_the_reason(
    client: httpx.AsyncClient, database: Database
) -> None:
    await post_twilio(client, sample("twilio", "sms_stop", MessageSid=sid(1)))
    (conversation,) = await rows(database, Conversation)
    async with database.session() as session:
        message = await reply(session, conversation.id, "Are you sure?", author_id=None)
        await session.commit()
    await run_jobs(database)
    status, error = await status_of(database, message.id)  # type: ignore[arg-type]
    assert status == "failed"
    assert error is not None and "opted out of sms (STOP)" in error
