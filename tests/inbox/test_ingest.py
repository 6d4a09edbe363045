"""Threading inbound messages: join the open thread, reopen a recent one, wake the snoozed;
notes stay private; a reply answers the waiting customer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import (
    InvalidRequest,
    add_note,
    messages_of,
    notes_of,
    reply,
    set_status,
    wake_snoozed,
)
from inbox.models import Conversation
from tests.utils.factories import inbound, receive, store


async def conversation(database: Database, conversation_id: int) -> Conversation:
    async with database.read_session() as session:
        found = await session.get(Conversation, conversation_id)
    assert found is not None
    return found


async def change(database: Database, conversation_id: int, **values: object) -> None:
    async with database.session() as session:
        found = await session.get(Conversation, conversation_id)
        assert found is not None
        for key, value in values.items():
            setattr(found, key, value)
        await session.commit()


async def texts(database: Database, conversation_id: int) -> list[str]:
    async with database.read_session() as session:
        return [m.text for m in await messages_of(session, conversation_id)]


async def test_a_known_sender_threads_into_the_open_conversation(database: Database) -> None:
    first = await receive(database, "m1", "cust-1", text="my order is late")
    second = await receive(database, "m2", "cust-1", text="order #123")
    stranger = await receive(database, "m3", "cust-2", text="hi")
    assert first.new_conversation and not second.new_conversation
    assert second.conversation_id == first.conversation_id
    assert stranger.conversation_id != first.conversation_id
    assert await texts(database, first.conversation_id) == ["my order is late", "order #123"]


async def test_a_replay_is_stored_once(database: Database) -> None:
    first = await receive(database, "m1", text="once")
    again = await store(database, inbound("m1", text="once, replayed with other text"))
    assert again.duplicate and again.message_id == first.message_id
    assert await texts(database, first.conversation_id) == ["once"]


@pytest.fixture
def two_hour_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIOGRAPH_REOPEN_WINDOW_HOURS", "2")
    reset_settings()


async def test_a_message_soon_after_resolution_reopens_it(
    database: Database, two_hour_window: None
) -> None:
    first = await receive(database, "m1")
    async with database.session() as session:
        await set_status(session, first.conversation_id, "resolved")
        await session.commit()
    await change(database, first.conversation_id, resolved_at=utcnow() - timedelta(minutes=90))

    again = await receive(database, "m2", text="one more thing")
    assert again.conversation_id == first.conversation_id and not again.new_conversation
    reopened = await conversation(database, first.conversation_id)
    assert (reopened.status, reopened.resolved_at) == ("open", None)
    assert await texts(database, first.conversation_id) == ["hello", "one more thing"]


async def test_a_message_after_the_window_starts_a_new_conversation(
    database: Database, two_hour_window: None
) -> None:
    first = await receive(database, "m1")
    async with database.session() as session:
        await set_status(session, first.conversation_id, "resolved")
        await session.commit()
    await change(database, first.conversation_id, resolved_at=utcnow() - timedelta(hours=3))

    later = await receive(database, "m2", text="new question")
    assert later.new_conversation and later.conversation_id != first.conversation_id
    assert later.customer_id == first.customer_id
    assert (await conversation(database, first.conversation_id)).status == "resolved"
    assert await texts(database, first.conversation_id) == ["hello"]
    assert await texts(database, later.conversation_id) == ["new question"]


async def test_snoozed_conversations_wake_when_due(database: Database) -> None:
    due = await receive(database, "m1", "cust-due")
    later = await receive(database, "m2", "cust-later")
    async with database.session() as session:
        for conv_id in (due.conversation_id, later.conversation_id):
            await set_status(session, conv_id, "snoozed", utcnow() + timedelta(hours=1))
        await session.commit()
    async with database.session() as session:
        assert await wake_snoozed(session) == 0
        await session.commit()
    await change(database, due.conversation_id, snoozed_until=utcnow() - timedelta(seconds=1))

    async with database.session() as session:
        assert await wake_snoozed(session) == 1
        await session.commit()
    woken = await conversation(database, due.conversation_id)
    assert (woken.status, woken.snoozed_until) == ("open", None)
    assert (await conversation(database, later.conversation_id)).status == "snoozed"


async def test_a_customer_message_unsnoozes(database: Database) -> None:
    first = await receive(database, "m1")
    async with database.session() as session:
        await set_status(session, first.conversation_id, "snoozed", utcnow() + timedelta(days=2))
        await session.commit()
    again = await receive(database, "m2", text="are you there?")
    assert again.conversation_id == first.conversation_id
    woken = await conversation(database, first.conversation_id)
    assert (woken.status, woken.snoozed_until) == ("open", None)


async def test_snooze_needs_a_future_time(database: Database) -> None:
    first = await receive(database, "m1")
    async with database.session() as session:
        with pytest.raises(InvalidRequest, match="future"):
            await set_status(session, first.conversation_id, "snoozed", utcnow())
        with pytest.raises(InvalidRequest, match="future"):
            await set_status(session, first.conversation_id, "snoozed", None)
    assert (await conversation(database, first.conversation_id)).status == "open"


async def test_notes_are_private(database: Database) -> None:
    first = await receive(database, "m1")
    async with database.session() as session:
        await add_note(session, first.conversation_id, "VIP, be gentle", author_id=None)
        await session.commit()
    async with database.read_session() as session:
        notes = [n.text for n in await notes_of(session, first.conversation_id)]
        kinds = (await session.execute(select(Job.kind))).scalars().all()
    assert notes == ["VIP, be gentle"]
    assert await texts(database, first.conversation_id) == ["hello"]
    assert "outbox.deliver" not in kinds  # nothing is sent to the customer


async def test_a_reply_answers_the_waiting_customer(database: Database) -> None:
    first = await receive(database, "m1")
    waiting = await conversation(database, first.conversation_id)
    assert waiting.waiting_since is not None and waiting.first_response_at is None

    async with database.session() as session:
        sent = await reply(session, first.conversation_id, "happy to help", author_id=None)
        await session.commit()
    answered = await conversation(database, first.conversation_id)
    assert answered.waiting_since is None
    assert answered.first_response_at is not None
    assert sent.delivery_status == "queued" and sent.direction == "out"

    async with database.session() as session:
        await reply(session, first.conversation_id, "anything else?", author_id=None)
        await session.commit()
    assert (
        await conversation(database, first.conversation_id)
    ).first_response_at == answered.first_response_at

    await receive(database, "m2", text="yes, one more")
    assert (await conversation(database, first.conversation_id)).waiting_since is not None
    assert await texts(database, first.conversation_id) == [
        "hello",
        "happy to help",
        "anything else?",
        "yes, one more",
    ]
