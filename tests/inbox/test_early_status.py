"""A provider's status callback that comes before the outbox has written the id the provider
gave the reply (a fast provider calls back within milliseconds of accepting the send, while
the outbox writes the id when its batch commits) is kept, and applied when the id is
written: a reply never stays "sent" after its provider said "delivered" or "failed".

The SMS provider here (``Provider``) accepts each reply at once and, before its answer
reaches the outbox, calls back with the id it gave it: through the intake, as the Twilio
route does, or (``test_an_agent_sees_what_twilio_reported_before_the_id_was_written``)
through the signed Twilio route itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from channels import twilio
from heliograph import live
from heliograph.db import Database, utcnow
from heliograph.settings import reset_settings
from inbox import intake, outbox
from inbox.conversations import reply
from inbox.models import EarlyStatus, Message
from inbox.outbox import DeliveryResult, OutboundMessage, register_sender
from inbox.periodic import settle_early_status_callbacks
from tests.utils.db import count, rows
from tests.utils.factories import member_with_token, receive
from tests.utils.http import PUBLIC, TWILIO_TOKEN, post_twilio
from tests.utils.jobs import run_jobs
from tests.utils.samples import sample

CUSTOMER = "+14017122661"
STATUS = "/webhooks/twilio/status"
FAILURE = "Twilio error 30003: unreachable destination handset"
Callback = Callable[[str], Awaitable[None]]


class Provider:
    """The SMS provider: it accepts each reply at once under a new id and, before its
    answer reaches the outbox, runs ``callback`` with that id (the provider calling back)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.callback: Callback | None = None

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        external_id = f"SM{len(self.ids) + 1:032d}"
        self.ids.append(external_id)
        if self.callback is not None:
            await self.callback(external_id)
        return DeliveryResult(external_id=external_id, status="sent")


@pytest.fixture
def provider(database: Database) -> Iterator[Provider]:
    fake = Provider()
    register_sender("sms", fake.send)
    try:
        yield fake
    finally:
        register_sender("sms", twilio.channel.send)  # Twilio's, as channels/twilio registers it


async def conversation(database: Database) -> int:
    """A conversation with the customer on SMS (whose jobs have run)."""
    conv = await receive(database, "SMin0001", CUSTOMER, channel="sms")
    await run_jobs(database)
    return conv.conversation_id


async def queue_replies(database: Database, conversation_id: int, *texts: str) -> list[int]:
    async with database.session() as session:
        written = [await reply(session, conversation_id, t, author_id=None) for t in texts]
        await session.commit()
    return [m.id for m in written]  # type: ignore[misc]


async def status(external_id: str, state: str, error: str | None = None) -> intake.IntakeOutcome:
    """A provider's status callback through the intake (what the Twilio route does)."""
    return await intake.receive([intake.StatusUpdate("sms", external_id, state, error)])


async def outcome(database: Database, message_id: int) -> tuple[str, str | None]:
    (message,) = await rows(database, Message, Message.id == message_id)
    return message.delivery_status, message.delivery_error


async def test_a_delivered_callback_before_the_id_is_written_ends_the_reply_delivered(
    database: Database, provider: Provider
) -> None:
    conv = await conversation(database)

    async def delivered_at_once(external_id: str) -> None:
        early = await status(external_id, "delivered")
        assert early.unknown_statuses == [external_id]  # no reply has the id yet

    provider.callback = delivered_at_once
    first, second = await queue_replies(database, conv, "Your order ships today.", "Thanks!")
    await run_jobs(database)

    assert [await outcome(database, m) for m in (first, second)] == [("delivered", None)] * 2
    await status(provider.ids[0], "sent")  # late and out of order: no step back
    assert await outcome(database, first) == ("delivered", None)
    assert await count(database, EarlyStatus) == 0  # applied, then gone


async def test_a_batch_writing_as_it_goes_applies_the_kept_callbacks_then(
    database: Database, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox writes a long batch's sent replies before its end (``EARLY_RECORD_S``):
    that write applies their kept callbacks, while the batch is still sending."""
    monkeypatch.setattr(outbox, "EARLY_RECORD_S", 0.0)  # every pause is "long"
    conv = await conversation(database)
    first_read_meanwhile: list[bool] = []

    async def read_at_once(external_id: str) -> None:
        await status(external_id, "read")
        if len(provider.ids) == 2:  # the second send: the first reply was written by now?
            for _ in range(100):
                if await outcome(database, first) == ("read", None):
                    break
                await asyncio.sleep(0.05)
            first_read_meanwhile.append(await outcome(database, first) == ("read", None))

    provider.callback = read_at_once
    first, second = await queue_replies(database, conv, "one", "two")
    await run_jobs(database)

    assert first_read_meanwhile == [True]
    assert [await outcome(database, m) for m in (first, second)] == [("read", None)] * 2


async def test_a_failed_callback_before_the_id_is_written_shows_its_error_on_the_reply(
    database: Database, provider: Provider
) -> None:
    conv = await conversation(database)

    async def failed_at_once(external_id: str) -> None:
        await status(external_id, "sent")
        await status(external_id, "failed", FAILURE)

    provider.callback = failed_at_once
    (message_id,) = await queue_replies(database, conv, "Your order ships today.")
    await run_jobs(database)

    assert await outcome(database, message_id) == ("failed", FAILURE)
    await status(provider.ids[0], "delivered")  # later, out of order: the failure stands
    assert await outcome(database, message_id) == ("failed", FAILURE)


async def test_a_providers_retry_of_an_early_callback_is_kept_once(
    database: Database, provider: Provider
) -> None:
    conv = await conversation(database)
    kept: list[int] = []

    async def delivered_and_retried(external_id: str) -> None:
        await status(external_id, "delivered")
        await status(external_id, "delivered")  # the provider's retry
        again = intake.StatusUpdate("sms", external_id, "delivered")
        await intake.receive([again, again])  # and twice in one batch
        kept.append(await count(database, EarlyStatus))

    provider.callback = delivered_and_retried
    (message_id,) = await queue_replies(database, conv, "Your order ships today.")
    await run_jobs(database)

    assert kept == [1]
    assert await outcome(database, message_id) == ("delivered", None)
    assert await count(database, EarlyStatus) == 0


async def test_a_callback_that_names_no_reply_is_deleted_after_a_day_and_harms_nothing(
    database: Database, provider: Provider
) -> None:
    conv = await conversation(database)
    (message_id,) = await queue_replies(database, conv, "Your order ships today.")
    await run_jobs(database)  # sent, no callback yet
    stranger = "SM" + "9" * 32  # a message of another application on the same account
    await status(stranger, "delivered")
    await status(stranger, "failed", FAILURE)
    assert await count(database, EarlyStatus) == 2

    assert await settle_early_status_callbacks(database) == 0  # not a day old: kept
    assert await count(database, EarlyStatus) == 2
    async with database.session() as session:  # a day and a minute later
        await session.execute(
            update(EarlyStatus).values(
                received_at=utcnow() - outbox.EARLY_STATUS_KEPT - timedelta(minutes=1)
            )
        )
        await session.commit()
    assert await settle_early_status_callbacks(database) == 2
    assert await count(database, EarlyStatus) == 0
    assert await outcome(database, message_id) == ("sent", None)  # untouched
    await status(provider.ids[0], "delivered")  # and its own callbacks still apply
    assert await outcome(database, message_id) == ("delivered", None)


async def test_a_callback_that_raced_the_outbox_commit_is_applied_by_the_clean_up_pass(
    database: Database,
) -> None:
    """On PostgreSQL the callback's transaction and the outbox's can each miss the other's
    uncommitted row: the callback is kept although the reply has its id now. The periodic
    pass applies it, and the thread's open pages are told."""
    conv = await conversation(database)
    (message_id,) = await queue_replies(database, conv, "Your order ships today.")
    await status("SM" + "7" * 32, "delivered")  # kept: no reply has the id
    async with database.session() as session:  # the outbox's commit that did not see it
        await session.execute(
            update(Message)
            .where(Message.id == message_id)  # type: ignore[arg-type]
            .values(delivery_status="sent", external_id="SM" + "7" * 32)
        )
        await session.commit()
    assert await outcome(database, message_id) == ("sent", None)

    pages = live.subscribe()
    try:
        assert await settle_early_status_callbacks(database) == 1
        event = await asyncio.wait_for(pages.get(), 5)
    finally:
        pages.close()
    assert event == (f"conversation-{conv}", {"conversation_id": conv})
    assert await outcome(database, message_id) == ("delivered", None)
    assert await count(database, EarlyStatus) == 0


@pytest.mark.parametrize(
    ("callback", "shown"),
    [
        ("status_delivered", ("delivered", None)),
        ("status_undelivered", ("failed", FAILURE)),
    ],
)
async def test_an_agent_sees_what_twilio_reported_before_the_id_was_written(
    client: httpx.AsyncClient,
    database: Database,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
    callback: str,
    shown: tuple[str, str | None],
) -> None:
    """End to end: the agent replies through the API, Twilio calls the signed status route
    before the outbox has written the reply's SID, and the agent then sees the outcome."""
    monkeypatch.setenv("HELIOGRAPH_TWILIO_ACCOUNT_SID", "AC" + "X" * 32)
    monkeypatch.setenv("HELIOGRAPH_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TWILIO_SMS_FROM", "+15017122661")
    monkeypatch.setenv("HELIOGRAPH_PUBLIC_URL", PUBLIC)
    reset_settings()
    _, auth = await member_with_token(database)
    conv = await conversation(database)
    answers: list[tuple[int, object]] = []

    async def twilio_calls_back(sid: str) -> None:
        form = sample("twilio", callback, MessageSid=sid, SmsSid=sid, To=CUSTOMER)
        answer = await post_twilio(client, form, STATUS)
        answers.append((answer.status_code, answer.json()))

    provider.callback = twilio_calls_back
    path = f"/api/v1/conversations/{conv}"
    sent = await client.post(f"{path}/reply", json={"text": "On its way"}, headers=auth)
    assert sent.status_code == 202
    await run_jobs(database)

    sid = provider.ids[0]
    assert answers == [(200, {"applied": 0, "unknown": [sid]})]  # kept, answered after commit
    messages = (await client.get(path, headers=auth)).json()["messages"]
    (seen,) = [m for m in messages if m["id"] == sent.json()["id"]]
    assert (seen["delivery_status"], seen["delivery_error"]) == shown
