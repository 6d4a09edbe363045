"""Inbound email: ``POST /webhooks/email`` with recorded mails, one test per fixture.

The fixtures in ``tests/fixtures/email/`` have the structure each client really writes:
Gmail (multipart/alternative, ``On ... wrote:`` wrapped over two lines, ``gmail_quote``),
Outlook on the web (``________________________________`` then ``From:`` / ``Sent:``, and
``divRplyFwdMsg`` in HTML), Outlook desktop in German sending HTML only (Word's
``MsoNormal`` paragraphs, ``Von:`` / ``Gesendet:``, a logo in ``multipart/related``), iPhone
Mail (``Sent from my iPhone`` above a ``>``-quoted attribution), Gmail with attachments, an
Exchange out-of-office (``Auto-Submitted: auto-generated``) and a Postfix bounce
(``multipart/report``, RFC 3464).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from crm_core.models import ContactPoint, Customer, Identity
from heliograph.db import Database
from inbox.conversations import reply
from inbox.models import Attachment, Conversation, Message
from tests.utils.db import count, rows
from tests.utils.factories import member_with_token
from tests.utils.http import post_email, post_email_twice
from tests.utils.jobs import run_jobs
from tests.utils.mail import (
    GMAIL_FIRST_ID,
    app_client,
    email_settings,
    file_bytes,
    nothing_stored,
    with_headers,
)
from tests.utils.samples import email_sample
from tests.utils.signing import inbound_body, signed_headers


@pytest.fixture
async def mail(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over SQLite with the email channel configured."""
    email_settings(monkeypatch, tmp_path)
    async for http in app_client():
        yield http


async def inbound_of(database: Database, provider_id: str) -> Message:
    (message,) = await rows(database, Message, Message.provider_message_id == provider_id)
    return message


# --- one test per fixture ---------------------------------------------------------------------


async def test_gmail_new_mail_opens_a_conversation_without_the_signature(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    await post_email_twice(mail, email_sample("gmail_first"))

    message = await inbound_of(sqlite_database, GMAIL_FIRST_ID)
    assert message.text == (
        "Hello,\n\nI ordered a lamp (order 1234) two weeks ago and it still hasn\u2019t "
        "arrived. Can\nyou check where it is?\n\nThanks,\nJane"
    )
    assert message.raw is not None
    assert message.raw["full_text"].endswith("--\nJane Doe\nProduct designer, Doe & Co.")
    assert message.raw["message_id"] == GMAIL_FIRST_ID
    assert ["Subject", "Order 1234 hasn't arrived"] in message.raw["headers"]
    assert not any(name == "DKIM-Signature" for name, _ in message.raw["headers"])
    assert message.sent_at == datetime(2024, 3, 5, 9, 58, tzinfo=UTC)  # Date: 10:58 +0100
    (identity,) = await rows(sqlite_database, Identity)
    assert (identity.channel, identity.external_id) == ("email", "jane.doe@gmail.com")
    (customer,) = await rows(sqlite_database, Customer)
    assert customer.display_name == "Jane Doe"
    (contact,) = await rows(sqlite_database, ContactPoint)
    assert (contact.kind, contact.value, contact.customer_id) == (
        "email",
        "jane.doe@gmail.com",
        customer.id,
    )
    (conversation,) = await rows(sqlite_database, Conversation)
    assert conversation.subject == "Order 1234 hasn't arrived"
    assert conversation.thread_key == GMAIL_FIRST_ID  # it starts the thread


async def test_gmail_reply_joins_the_first_mails_conversation_without_the_quote(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    first = (await post_email(mail, email_sample("gmail_first"))).json()
    second, _ = await post_email_twice(mail, email_sample("gmail_reply"))

    assert second["conversation_id"] == first["conversation_id"]
    message = await inbound_of(sqlite_database, second["message_id"])
    assert message.text == (
        'Thanks for checking! The tracking page says "label created" since Friday\n'
        "though. Could you ask the courier?\n\nJane"
    )
    assert message.raw is not None
    assert "> Your lamp left our warehouse on Friday" in message.raw["full_text"]
    assert message.raw["in_reply_to"] == ["<heliograph.2.0f3a9c1e5b7d2a48@heliograph.example>"]
    assert message.raw["references"][0] == GMAIL_FIRST_ID
    assert await count(sqlite_database, Conversation) == 1


async def test_outlook_reply_is_cut_at_its_from_sent_block(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer, _ = await post_email_twice(mail, email_sample("outlook_reply"))

    message = await inbound_of(sqlite_database, answer["message_id"])
    assert message.text == (
        "Hi Ana,\n\nYes, please move the delivery to Thursday, March 7. Someone will be at "
        "the\nreception from 9 to 5.\n\nBest regards\nTom"
    )
    assert message.raw is not None
    assert (
        "From: Heliograph Support <support@heliograph.example>\nSent:" in (message.raw["full_text"])
    )
    assert message.raw["from_name"] == "Tom M\u00fcller"  # RFC 2047, iso-8859-1
    (conversation,) = await rows(sqlite_database, Conversation)
    assert conversation.subject == "Delivery date"  # "RE: " dropped
    # Nothing of the thread is stored here, so its key is the thread's root by References.
    assert conversation.thread_key == (
        "<AM9PR07MB7123A1B2C3D4E5F60718293A4B5C6D7E8F9@AM9PR07MB7123.eurprd07.prod.outlook.com>"
    )


async def test_outlook_html_only_mail_becomes_readable_text_and_keeps_its_inline_image(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer, _ = await post_email_twice(mail, email_sample("outlook_html_only"))

    message = await inbound_of(sqlite_database, answer["message_id"])
    assert message.text == (
        "Hello,\n\nplease cancel our subscription (customer no. 55-1207) at the end of this "
        "month. We are moving to an in-house tool.\n\nKind regards / Mit freundlichen "
        "Gr\u00fc\u00dfen\nTom M\u00fcller\nHead of Operations | Contoso GmbH"
    )
    assert message.raw is not None
    assert "Gesendet: Montag, 4. M\u00e4rz 2024 16:05" in message.raw["full_text"]
    assert "font-family" not in message.raw["full_text"]  # the <style> block is not text
    (conversation,) = await rows(sqlite_database, Conversation)
    assert conversation.subject == "Your subscription"  # "AW: " dropped
    (logo,) = await rows(sqlite_database, Attachment)
    assert (logo.kind, logo.content_type, logo.filename) == ("image", "image/png", "image001.png")
    await run_jobs(sqlite_database)
    (logo,) = await rows(sqlite_database, Attachment)
    assert logo.storage_path and file_bytes(logo.storage_path)[:4] == b"\x89PNG"


async def test_apple_mail_reply_is_cut_at_sent_from_my_iphone(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer, _ = await post_email_twice(mail, email_sample("apple_mail_reply"))

    message = await inbound_of(sqlite_database, answer["message_id"])
    assert message.text == "Perfect, obrigada! I can see the refund in my account now."
    assert message.raw is not None
    assert "> On 5 Mar 2024, at 18:02, Heliograph Support" in message.raw["full_text"]
    (conversation,) = await rows(sqlite_database, Conversation)
    assert conversation.thread_key == "<8B2E4F60-1A3C-4D5E-8F90-A1B2C3D4E5F6@icloud.com>"
    assert conversation.subject == "Your refund"


async def test_attachments_are_stored_on_disk_and_not_in_the_message_row(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer, _ = await post_email_twice(mail, email_sample("multipart_attachment"))

    message = await inbound_of(sqlite_database, answer["message_id"])
    assert message.text == (
        "The lamp arrived with a cracked shade. Invoice and a photo attached.\n\nJane"
    )
    assert len(json.dumps(message.raw)) < 4000  # headers and text, never the files
    await run_jobs(sqlite_database)
    pdf, photo = await rows(sqlite_database, Attachment)
    assert (pdf.kind, pdf.content_type, pdf.filename) == (
        "file",
        "application/pdf",
        "invoice-1234.pdf",
    )
    assert (photo.kind, photo.filename) == ("image", "cracked shade.jpg")
    assert pdf.message_id == photo.message_id == message.id
    assert pdf.storage_path and file_bytes(pdf.storage_path).startswith(b"%PDF-1.4")
    assert pdf.size == len(file_bytes(pdf.storage_path))
    assert photo.storage_path and file_bytes(photo.storage_path)[:3] == b"\xff\xd8\xff"


async def test_an_out_of_office_reply_is_acknowledged_and_not_stored(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    for _ in range(2):
        answer = await post_email(mail, email_sample("auto_reply"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["dropped"] == "auto-reply"
    assert await nothing_stored(sqlite_database)


async def sent_reply(database: Database, conversation_id: int) -> None:
    """A reply we sent, under the Message-ID that bounce.eml reports on."""
    async with database.session() as session:
        sent = await reply(session, conversation_id, "Here is the tracking link", None)
        sent.delivery_status = "sent"
        sent.external_id = "<heliograph.12.5c0ffee5c0ffee51@heliograph.example>"
        await session.commit()


async def test_a_bounce_marks_our_reply_failed_and_opens_nothing(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    first = (await post_email(mail, email_sample("gmail_first"))).json()
    await sent_reply(sqlite_database, first["conversation_id"])

    answer = await post_email(mail, email_sample("bounce"))

    assert answer.status_code == 200 and answer.json()["dropped"] == "bounce"
    (bounced,) = await rows(sqlite_database, Message, Message.direction == "out")
    assert bounced.delivery_status == "failed"
    assert bounced.delivery_error is not None
    assert "5.1.1" in bounced.delivery_error and "User unknown" in bounced.delivery_error
    assert len(await rows(sqlite_database, Message, Message.direction == "in")) == 1
    assert await count(sqlite_database, Customer) == 1  # MAILER-DAEMON is nobody's customer


async def test_a_delay_notice_is_dropped_without_failing_the_reply(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    first = (await post_email(mail, email_sample("gmail_first"))).json()
    await sent_reply(sqlite_database, first["conversation_id"])
    delayed = email_sample("bounce").replace(b"Action: failed", b"Action: delayed")

    answer = await post_email(mail, delayed)

    assert answer.status_code == 200 and answer.json()["dropped"] == "bounce"
    (still,) = await rows(sqlite_database, Message, Message.direction == "out")
    assert still.delivery_status == "sent"  # the server is still trying (RFC 3464 2.3.3)


# --- threading --------------------------------------------------------------------------------


async def test_a_reply_without_threading_headers_is_matched_by_its_subject(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    first = (await post_email(mail, email_sample("gmail_first"))).json()
    bare = with_headers(
        email_sample("gmail_first"),
        drop=("message-id", "subject"),
        Message_ID="<reply-no-headers@mail.example>",
        Subject="Re: AW: Order 1234 hasn't  arrived",
    )
    fresh = with_headers(
        email_sample("gmail_first"), drop=("message-id",), Message_ID="<same-subject@mail.example>"
    )

    again = (await post_email(mail, bare)).json()
    other = (await post_email(mail, fresh)).json()

    assert again["conversation_id"] == first["conversation_id"]
    # The same subject without "Re:" is a new mail, so a new thread.
    assert other["conversation_id"] != first["conversation_id"]


async def test_a_customer_known_by_email_elsewhere_is_one_customer_with_both_threads(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    body = inbound_body("api-1", "crm-77", "Hi from the app", email="Jane.Doe@gmail.com")
    via_api = await mail.post("/api/v1/inbound", content=body, headers=signed_headers(body))
    assert via_api.status_code == 200, via_api.text
    via_mail = (await post_email(mail, email_sample("gmail_first"))).json()

    assert via_mail["customer_id"] == via_api.json()["customer_id"]
    assert await count(sqlite_database, Customer) == 1
    identities = await rows(sqlite_database, Identity)
    assert {(i.channel, i.external_id) for i in identities} == {
        ("api", "crm-77"),
        ("email", "jane.doe@gmail.com"),
    }
    _, auth = await member_with_token(sqlite_database)
    timeline = await mail.get(f"/api/v1/customers/{via_mail['customer_id']}/timeline", headers=auth)
    assert timeline.status_code == 200, timeline.text
    opened = {
        entry["conversation_id"]
        for entry in timeline.json()["entries"]
        if entry["kind"] == "conversation.opened"
    }
    assert opened == {via_api.json()["conversation_id"], via_mail["conversation_id"]}


# --- dedupe on both engines -------------------------------------------------------------------


@pytest.fixture
async def mail_any(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    email_settings(monkeypatch, tmp_path)
    async for http in app_client():
        yield http


async def test_a_replayed_mail_is_stored_once_and_threads_on_both_engines(
    mail_any: httpx.AsyncClient, database: Database
) -> None:
    first, _ = await post_email_twice(mail_any, email_sample("gmail_first"))
    second, _ = await post_email_twice(mail_any, email_sample("gmail_reply"))
    assert second["conversation_id"] == first["conversation_id"]
    no_id = with_headers(email_sample("multipart_attachment"), drop=("message-id",))
    third, _ = await post_email_twice(mail_any, no_id)
    assert third["message_id"].startswith("<sha256.")  # synthesised from the bytes: stable
    assert await count(database, Message) == 3
    assert await count(database, Attachment) == 2


async def test_whatsapp_then_email_from_an_address_on_the_profile_is_one_customer(
    mail: httpx.AsyncClient, sqlite_database: Database
) -> None:
    """The issue's case: WhatsApp first; an agent stores the email; then the customer mails."""
    from tests.utils.factories import inbound

    whatsapp = inbound("SM-wa-1", "+5511912345678", "Oi! Tenho uma dúvida", channel="whatsapp")
    whatsapp.sender.phone = "+5511912345678"
    from tests.utils.factories import store

    first = await store(sqlite_database, whatsapp)
    _, auth = await member_with_token(sqlite_database)
    stored = await mail.post(
        f"/api/v1/customers/{first.customer_id}/contacts",
        json={"kind": "email", "value": "Jane.Doe@Gmail.com"},
        headers=auth,
    )
    assert stored.status_code == 201, stored.text
    assert stored.json() == {"kind": "email", "value": "jane.doe@gmail.com"}

    via_mail = (await post_email(mail, email_sample("gmail_first"))).json()

    assert via_mail["customer_id"] == first.customer_id
    assert await count(sqlite_database, Customer) == 1
    timeline = await mail.get(f"/api/v1/customers/{first.customer_id}/timeline", headers=auth)
    opened = {
        entry["conversation_id"]
        for entry in timeline.json()["entries"]
        if entry["kind"] == "conversation.opened"
    }
    assert opened == {first.conversation_id, via_mail["conversation_id"]}
    # The same address cannot be put on a second customer: that is a merge.
    other = await store(sqlite_database, inbound("api-x", "someone-else"))
    taken = await mail.post(
        f"/api/v1/customers/{other.customer_id}/contacts",
        json={"kind": "email", "value": "jane.doe@gmail.com"},
        headers=auth,
    )
    assert taken.status_code == 409 and "merge" in taken.json()["error"]
