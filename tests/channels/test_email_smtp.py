"""Email over real SMTP, in-process: the listener's answers (250 only once committed, 451 so
the sender retries, 552, 554) and outbound replies to a recording server (aiosmtpd):
threading headers, a stable Message-ID across retries, 4xx retried, 5xx refused."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from channels.email import channel, compose, listener, outbound_message_id, receive
from channels.email.settings import EmailSettings
from heliograph.db import Database
from inbox import intake
from inbox.conversations import reply
from inbox.ingest import InboundMessage
from inbox.intake import IntakeOutcome
from inbox.models import Message
from inbox.outbox import DeliveryRefused, DeliveryRetry, OutboundMessage
from tests.utils.jobs import run_jobs
from tests.utils.mail import GMAIL_FIRST_ID, SUPPORT, email_settings
from tests.utils.processes import free_port
from tests.utils.samples import email_sample


@dataclass
class RecordingServer:
    """An SMTP server that keeps what it accepts; ``answers`` script the next DATA replies."""

    port: int = 0
    received: list[EmailMessage] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith(".invalid"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        if self.answers:
            self.refused_ids.append(str(mail["Message-ID"]))
            return self.answers.pop(0)
        self.received.append(mail)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
async def relay() -> AsyncIterator[RecordingServer]:
    loop = asyncio.get_running_loop()
    recorder = RecordingServer()
    server = await loop.create_server(lambda: SMTP(recorder, loop=loop), host="127.0.0.1", port=0)
    recorder.port = server.sockets[0].getsockname()[1]
    yield recorder
    server.close()


@pytest.fixture
def configured(
    sqlite_database: Database,
    relay: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Database:
    email_settings(monkeypatch, tmp_path, smtp_host="127.0.0.1", smtp_port=str(relay.port))
    return sqlite_database


async def outgoing(database: Database) -> list[Message]:
    async with database.read_session() as session:
        stmt = select(Message).where(Message.direction == "out").order_by(Message.id)
        return list((await session.execute(stmt)).scalars().all())


async def agent_reply(database: Database, conversation_id: int, text: str) -> int:
    async with database.session() as session:
        message = await reply(session, conversation_id, text, None)
        await session.commit()
    assert message.id is not None
    return message.id


# --- outbound ---------------------------------------------------------------------------------


async def test_an_agent_reply_lands_in_the_customers_thread(
    configured: Database, relay: RecordingServer
) -> None:
    first = await receive(email_sample("gmail_first"))
    assert first.accepted is not None
    reply_id = await agent_reply(configured, first.accepted.conversation_id, "It ships today.")

    await run_jobs(configured)

    (sent,) = relay.received
    assert sent["From"] == SUPPORT
    assert sent["To"] == "Jane Doe <jane.doe@gmail.com>"
    assert sent["Subject"] == "Re: Order 1234 hasn't arrived"
    assert sent["In-Reply-To"] == GMAIL_FIRST_ID
    assert sent["References"] == GMAIL_FIRST_ID
    assert sent["Auto-Submitted"] is None  # a person wrote it (RFC 3834 section 5)
    assert sent.get_content().strip() == "It ships today."
    assert str(sent["Message-ID"]).startswith(f"<heliograph.{reply_id}.")
    (stored,) = await outgoing(configured)
    assert (stored.delivery_status, stored.external_id) == ("sent", str(sent["Message-ID"]))


async def test_an_automatic_message_is_marked_auto_submitted(
    configured: Database, relay: RecordingServer
) -> None:
    """RFC 3834: mail no person wrote says so, so the customer's responder won't answer it."""
    first = await receive(email_sample("gmail_first"))
    assert first.accepted is not None
    async with configured.session() as session:
        await reply(
            session, first.accepted.conversation_id, "We'll answer at 09:00.", None, "system"
        )
        await session.commit()

    await run_jobs(configured)

    (sent,) = relay.received
    assert sent["Auto-Submitted"] == "auto-replied"

    # Jane answers from Gmail: References carry her first mail and our reply.
    answer = (
        email_sample("gmail_first")
        .replace(GMAIL_FIRST_ID.encode(), b"<jane-second@mail.gmail.com>")
        .replace(
            b"Subject: Order 1234",
            b"In-Reply-To: " + str(sent["Message-ID"]).encode() + b"\n"
            b"References: "
            + GMAIL_FIRST_ID.encode()
            + b" "
            + str(sent["Message-ID"]).encode()
            + b"\nSubject: Re: Order 1234",
        )
    )
    second = await receive(answer)
    assert second.accepted is not None
    assert second.accepted.conversation_id == first.accepted.conversation_id

    await agent_reply(configured, first.accepted.conversation_id, "The courier is on it.")
    await run_jobs(configured)
    follow_up = relay.received[-1]
    assert follow_up["In-Reply-To"] == "<jane-second@mail.gmail.com>"
    assert str(follow_up["References"]).split() == [
        GMAIL_FIRST_ID,
        str(sent["Message-ID"]),
        "<jane-second@mail.gmail.com>",
    ]


async def test_a_reply_naming_only_our_message_id_threads_by_it(
    configured: Database, relay: RecordingServer
) -> None:
    first = await receive(email_sample("outlook_reply"))
    assert first.accepted is not None
    await agent_reply(configured, first.accepted.conversation_id, "Thursday it is.")
    await run_jobs(configured)
    ours = str(relay.received[0]["Message-ID"])

    # A client that keeps In-Reply-To only and changes the subject.
    mail = EmailMessage()
    mail["From"] = "Tom Mueller <tom.mueller@contoso.example>"
    mail["To"] = SUPPORT
    mail["Subject"] = "one more thing"
    mail["Message-ID"] = "<one-more-thing@contoso.example>"
    mail["In-Reply-To"] = ours
    mail.set_content("Please ring the bell twice.")
    again = await receive(mail.as_bytes())

    assert again.accepted is not None
    assert again.accepted.conversation_id == first.accepted.conversation_id


async def test_a_retry_after_451_sends_the_same_message_id(
    configured: Database, relay: RecordingServer
) -> None:
    first = await receive(email_sample("gmail_first"))
    assert first.accepted is not None
    relay.answers = ["451 4.3.0 Temporary local problem", "421 4.7.0 Try again later"]
    await agent_reply(configured, first.accepted.conversation_id, "On its way.")

    outcomes: dict[str, int] = {}
    for _ in range(100):  # the retries wait out their (test-short) backoff
        for outcome, n in (await run_jobs(configured)).items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        if relay.received:
            break
        await asyncio.sleep(0.05)

    (sent,) = relay.received
    assert relay.refused_ids == [str(sent["Message-ID"])] * 2  # the same id every time
    assert outcomes["retry"] == 2, outcomes
    (stored,) = await outgoing(configured)
    assert stored.delivery_status == "sent"


async def test_a_5xx_answer_fails_the_reply_with_the_servers_words(
    configured: Database, relay: RecordingServer
) -> None:
    first = await receive(email_sample("gmail_first"))
    assert first.accepted is not None
    relay.answers = ["554 5.7.1 Message rejected: spam score too high"]
    await agent_reply(configured, first.accepted.conversation_id, "Hello")

    await run_jobs(configured)

    assert relay.received == []
    (stored,) = await outgoing(configured)
    assert stored.delivery_status == "failed"
    assert stored.delivery_error is not None
    assert "554 5.7.1 Message rejected: spam score too high" in stored.delivery_error


def outbound(recipient: str = "jane.doe@gmail.com") -> OutboundMessage:
    return OutboundMessage(
        message_id=41,
        conversation_id=7,
        channel="email",
        recipient_id=recipient,
        text="Hello",
        subject="Order 1234",
        reply_context={"message_id": "<a@x>", "references": ["<root@x>"], "subject": "Order"},
    )


async def test_a_refused_recipient_is_a_permanent_failure(configured: Database) -> None:
    with pytest.raises(DeliveryRefused, match=r"550 5\.1\.1"):
        await channel.send(outbound("nobody@example.invalid"))


async def test_an_unreachable_server_is_retried(
    configured: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmailSettings.get(), "smtp_port", free_port())  # nothing listens there
    with pytest.raises(DeliveryRetry, match="could not"):
        await channel.send(outbound())


async def test_without_an_smtp_host_nothing_can_be_sent(
    configured: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmailSettings.get(), "smtp_host", "")
    with pytest.raises(DeliveryRefused, match="HELIOGRAPH_SMTP_HOST"):
        await channel.send(outbound())


def test_the_message_id_depends_on_the_reply_alone(configured: Database) -> None:
    settings = EmailSettings.get()
    one, again = compose(outbound(), settings), compose(outbound(), settings)
    assert one["Message-ID"] == again["Message-ID"] == outbound_message_id(outbound(), settings)
    assert str(one["Message-ID"]).endswith("@heliograph.example>")
    assert (one["In-Reply-To"], one["References"]) == ("<a@x>", "<root@x> <a@x>")
    assert one["Subject"] == "Re: Order 1234"


# --- the SMTP listener ------------------------------------------------------------------------


@pytest.fixture
async def listening(configured: Database) -> AsyncIterator[int]:
    port = free_port()
    server = await listener.start_listener("127.0.0.1", port, 20_000)
    yield port
    server.close()


async def smtp_send(port: int, raw: bytes, sender: str = "jane.doe@gmail.com") -> str:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as smtp:
        _, answer = await smtp.sendmail(sender, [SUPPORT], raw)
    return answer


async def inbound_ids(database: Database) -> list[str | None]:
    async with database.read_session() as session:
        stmt = select(Message.provider_message_id).where(Message.direction == "in")
        return list((await session.execute(stmt)).scalars().all())


async def test_the_listener_answers_250_once_the_mail_is_stored(
    listening: int, configured: Database
) -> None:
    answer = await smtp_send(listening, email_sample("gmail_first"))
    assert f"Stored as {GMAIL_FIRST_ID}" in answer
    assert await inbound_ids(configured) == [GMAIL_FIRST_ID]  # on disk when 250 came
    await smtp_send(listening, email_sample("gmail_first"))  # the MTA's retry: a duplicate
    assert await inbound_ids(configured) == [GMAIL_FIRST_ID]


async def test_a_storage_failure_is_451_and_the_retry_stores_it(
    listening: int, configured: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_receive = intake.receive
    tries: list[str] = []

    async def down_once(items: list[InboundMessage], **options: Any) -> IntakeOutcome:
        tries.extend(item.provider_message_id for item in items)
        if len(tries) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return await real_receive(items, **options)

    monkeypatch.setattr(intake, "receive", down_once)
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await smtp_send(listening, email_sample("gmail_first"))
    assert refused.value.code == 451
    assert await inbound_ids(configured) == []

    assert "Stored" in await smtp_send(
        listening, email_sample("gmail_first")
    )  # the MTA tries again
    assert await inbound_ids(configured) == [GMAIL_FIRST_ID]
    assert tries == [GMAIL_FIRST_ID] * 2


async def test_an_oversized_mail_is_552(listening: int, configured: Database) -> None:
    huge = email_sample("gmail_first") + b"x" * 30_000
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await smtp_send(listening, huge)
    assert refused.value.code == 552
    assert await inbound_ids(configured) == []


async def test_the_envelope_decides_what_is_a_bounce_and_who_wrote(
    listening: int, configured: Database
) -> None:
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await smtp_send(listening, b"Subject: no sender\r\n\r\nhello", sender="")
    assert refused.value.code == 554
    assert "no From address" in refused.value.message

    # A delivery report comes from the null sender, MAIL FROM:<>: 250, and nothing stored.
    answer = await smtp_send(listening, email_sample("bounce"), sender="")
    assert "discarded (bounce)" in answer
    assert await inbound_ids(configured) == []

    # No From header but a real envelope sender: that address is the customer's.
    headless = b"Message-ID: <no-from@mta.example>\r\nSubject: hi\r\n\r\nhello"
    assert "Stored" in await smtp_send(listening, headless, sender="ops@example.org")
    assert await inbound_ids(configured) == ["<no-from@mta.example>"]
