"""The decision's one read: the conversation locked with its customer, the customer's
previous agent and its queue wait, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from heliograph.db import Database
from inbox.conversations import ConversationNotFound
from inbox.models import Conversation
from routing import snapshot
from routing.assignment import lock_for_routing
from tests.utils.routing_world import customer_writes, route, team, utc

NOW = utc(2026, 6, 10, 14, 0)


async def test_one_read_brings_the_previous_agent_the_customer_and_the_wait(
    database: Database,
) -> None:
    snapshot.invalidate()
    queued = await customer_writes(database, "q1", sender="cust-q", language="pt")
    assert (await route(database, queued, NOW)).member_id is None  # nobody on the team yet
    async with database.session() as session:
        locked = await lock_for_routing(session, queued.conversation_id)
        assert locked.waiting and locked.previous_member_id is None
        assert locked.customer is not None
        assert locked.customer.id == locked.conversation.customer_id
        assert locked.customer.language == "pt"

    ids = await team(database, {"name": "Ana Lima", "languages": ("pt",)})
    sent = await customer_writes(database, "m1", sender="cust-a")
    assert (await route(database, sent, NOW)).member_id == ids["Ana"]  # type: ignore[union-attr]
    async with database.session() as session:
        locked = await lock_for_routing(session, sent.conversation_id)
        assert locked.previous_member_id == ids["Ana"] and not locked.waiting
        assert locked.conversation.assignee_id == ids["Ana"]
        with pytest.raises(ConversationNotFound):
            await lock_for_routing(session, 10**9)


async def test_postgres_holds_the_conversation_row_until_commit(pg_database: Database) -> None:
    sent = await customer_writes(pg_database, "m1")
    async with pg_database.session() as holder:
        await lock_for_routing(holder, sent.conversation_id)
        async with pg_database.session() as other:
            await other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(DBAPIError):
                await other.execute(
                    select(Conversation.id)
                    .where(Conversation.id == sent.conversation_id)
                    .with_for_update()
                )
        await holder.rollback()
