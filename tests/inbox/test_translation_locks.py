"""A message's translation and its routing write the same two rows (the conversation and
the message) in concurrent transactions. On PostgreSQL they must take them in one order,
conversation first, or each waits for the other until the server kills one of them with
"deadlock detected" (bench/pipeline.py at 50 msg/s saw eleven translations and one
routing job fail that way, retried later)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from heliograph.db import Database, utcnow
from heliograph.settings import reset_settings
from inbox import translation
from inbox.assignment import lock_conversations
from inbox.bus import MessageRef
from inbox.models import Conversation, Message
from tests.utils.factories import inbound, store

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
SPANISH = "Hola, necesito ayuda con el pedido que hice ayer por la tarde"


@POSTGRES_ONLY
async def test_a_translation_waits_for_routing_of_its_conversation_instead_of_deadlocking(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_ENABLED", "true")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_PROVIDER", "libre")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_URL", "http://127.0.0.1:9/")  # never called:
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_AGENT_LANGUAGES", '["es"]')  # the team reads es
    reset_settings()
    # Another customer's message first: the detector's Spanish model is loaded before the
    # race below, so the translation reaches its commit while routing holds the lock.
    warm = await store(database, inbound("m0", "c0", text=SPANISH))
    await translation.translate_inbound(MessageRef(message_id=warm.message_id))
    stored = await store(database, inbound("m1", "c1", text=SPANISH))
    message_id = stored.message_id
    async with database.read_session() as session:
        message = await session.get(Message, message_id)
        assert message is not None and message.routed_at is None
        conversation_id = message.conversation_id
        conversation = await session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.language is None, conversation

    locked = asyncio.Event()

    async def route() -> None:
        """As routing's batch does: lock the conversation, then stamp its message."""
        async with database.session() as session:
            await lock_conversations(session, [conversation_id])
            locked.set()
            await asyncio.sleep(0.5)  # the translation tries to commit meanwhile
            await session.execute(
                update(Message).where(Message.id == message_id).values(routed_at=utcnow())  # type: ignore[arg-type]
            )
            await session.commit()

    routing = asyncio.create_task(route())
    await locked.wait()
    await translation.translate_inbound(MessageRef(message_id=message_id))
    await routing  # neither was killed

    async with database.read_session() as session:
        message = await session.get(Message, message_id)
        conversation = await session.get(Conversation, conversation_id)
    assert message is not None and conversation is not None
    assert message.routed_at is not None
    assert (message.translation_status, message.original_language) == ("not_needed", "es")
    assert (conversation.language, conversation.language_source) == ("es", "detected")
