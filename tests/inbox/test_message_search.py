"""The inbox search's text index (issue #16, migration 0022, ``inbox/listing.py``): a
substring of a message's text or original text, in any case, on SQLite (FTS5 trigram) and
PostgreSQL (pg_trgm); kept in step with edits, erasure and deletes; the query's LIKE
wildcards literal; a query of 1-2 characters matches the customer's fields only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import delete, text, update

from crm_core.gdpr import erase_customer
from heliograph.db import Database
from heliograph.migrate import alembic_config
from inbox import listing
from inbox.conversations import ConversationFilter, list_conversations
from inbox.models import Message
from tests.utils.factories import edit, receive


@pytest.fixture(params=["index", "scan", "estimate"])
def plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of listing: "index" (the probe finds fewer matches than its limit: the
    conversations it found), "scan" (as many: each conversation's messages tested) and
    "estimate" (PostgreSQL's planner expects many: the test without a probe)."""
    if request.param == "scan":
        monkeypatch.setattr(listing, "PROBE_LIMIT", 1)
    if request.param == "estimate":
        monkeypatch.setattr(listing, "COMMON_ESTIMATE", 0)
    return str(request.param)


async def _found(database: Database, q: str, **kw: Any) -> list[int]:
    async with database.session() as session:
        rows = await list_conversations(session, ConversationFilter(q=q, limit=100, **kw))
        return [int(c.id) for c in rows]  # type: ignore[arg-type]


async def _set_message(database: Database, message_id: int, **values: Any) -> None:
    async with database.session() as session:
        await session.execute(update(Message).where(Message.id == message_id).values(**values))  # type: ignore[arg-type]
        await session.commit()


async def test_a_substring_in_any_case_in_the_text_or_the_original(
    database: Database, plan: str
) -> None:
    refund = await receive(database, "s1", "cust-1", text="Please REFUND my order", name="Ann")
    parcel = await receive(database, "s2", "cust-2", text="where is my parcel", name="Bo")
    translated = await receive(database, "s3", "cust-3", text="hello, my invoice", name="Cy")
    await _set_message(
        database,
        translated.message_id,
        original_text="hola, mi FACTURA atrasada",
        text="hello, my late invoice",
        translation_status="done",
    )
    assert await _found(database, "refund") == [refund.conversation_id]
    assert await _found(database, "EFUN") == [refund.conversation_id]  # inside a word
    assert await _found(database, "y ord") == [refund.conversation_id]  # across words
    assert await _found(database, "arce") == [parcel.conversation_id]
    assert await _found(database, "factura atr") == [translated.conversation_id]  # original
    assert await _found(database, "late inv") == [translated.conversation_id]  # translation
    assert await _found(database, "my") == []  # 2 characters: not the text
    assert await _found(database, "my ") == []  # stripped: 2 characters
    assert await _found(database, "my p") == [parcel.conversation_id]
    assert await _found(database, "zyxwvut") == []
    # With the other conditions of the listing.
    assert await _found(database, "refund", before_id=refund.conversation_id) == []


async def test_an_edited_or_deleted_message_no_longer_matches_its_old_words(
    database: Database, plan: str
) -> None:
    first = await receive(database, "e1", "cust-1", text="my tracking number is wrong")
    assert await _found(database, "tracking") == [first.conversation_id]
    assert await edit(database, "api", "e1", "never mind, it arrived") == first.message_id
    assert await _found(database, "tracking") == []
    assert await _found(database, "it arrived") == [first.conversation_id]
    async with database.session() as session:
        await session.execute(delete(Message).where(Message.id == first.message_id))  # type: ignore[arg-type]
        await session.commit()
    assert await _found(database, "it arrived") == []


async def test_an_erased_customers_words_are_not_found(database: Database, plan: str) -> None:
    gone = await receive(database, "g1", "cust-1", text="my secret address 12 Elm Road")
    kept = await receive(database, "g2", "cust-2", text="the Elm Road shop is closed")
    async with database.session() as session:
        await erase_customer(session, gone.customer_id, actor="test")
        await session.commit()
    assert await _found(database, "secret address") == []
    assert await _found(database, "elm road") == [kept.conversation_id]


async def test_like_wildcards_in_the_query_are_literal(database: Database, plan: str) -> None:
    percent = await receive(database, "w1", "cust-1", text="is the 50% discount on?")
    await receive(database, "w2", "cust-2", text="is the 50 euro discount on?")
    under = await receive(database, "w3", "cust-3", text="my user is ann_lee")
    await receive(database, "w4", "cust-4", text="my user is annelee")
    quote = await receive(database, "w5", "cust-5", text='she said "hi" back\\slash')
    assert await _found(database, "50%") == [percent.conversation_id]
    assert await _found(database, "0% d") == [percent.conversation_id]
    assert await _found(database, "ann_lee") == [under.conversation_id]
    assert await _found(database, "n_l") == [under.conversation_id]
    assert await _found(database, '"hi"') == [quote.conversation_id]
    assert await _found(database, "k\\s") == [quote.conversation_id]
    assert await _found(database, "%%%") == []
    assert await _found(database, "___") == []


async def test_a_query_of_one_or_two_characters_matches_customers_only(
    database: Database,
) -> None:
    lucia = await receive(database, "c1", "cust-1", text="ok", name="Lucia Perez")
    await receive(database, "c2", "cust-2", text="lu lu lu", name="Tom Baker")
    assert await _found(database, "Lu") == [lucia.conversation_id]  # the name's start
    assert await _found(database, "ok") == []  # not the text
    assert await _found(database, "x") == []


async def test_the_migration_goes_down_and_up_again(database: Database) -> None:
    from alembic import command

    found = await receive(database, "m1", "cust-1", text="a message before the index")
    url = database.settings.database_url
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0021_job_batches")
    assert not await _index_present(database)
    await receive(database, "m2", "cust-2", text="a message while there is no index")
    await asyncio.to_thread(command.upgrade, alembic_config(url), "heads")
    assert await _index_present(database)
    assert await _found(database, "before the ind") == [found.conversation_id]
    assert len(await _found(database, "a message")) == 2  # both, the backfill's work


async def _index_present(database: Database) -> bool:
    async with database.session() as session:
        if database.engine.dialect.name == "sqlite":
            sql = "SELECT count(*) FROM sqlite_master WHERE name LIKE 'message_search%'"
        else:
            sql = "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'ix_message_%trgm'"
        return int((await session.execute(text(sql))).scalar_one()) > 0


async def test_the_sqlite_index_stays_in_step_with_the_table(sqlite_database: Database) -> None:
    await receive(sqlite_database, "i1", "cust-1", text="first words")
    second = await receive(sqlite_database, "i2", "cust-2", text="second words")
    await edit(sqlite_database, "api", "i1", "first words, edited")
    await _set_message(sqlite_database, second.message_id, delivery_status="read")
    async with sqlite_database.session() as session:
        await session.execute(
            text("INSERT INTO message_search (message_search, rank) VALUES ('integrity-check', 1)")
        )
        plan = (
            await session.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT rowid FROM message_search"
                    " WHERE message_search MATCH '\"words\"'"
                )
            )
        ).all()
    assert any("VIRTUAL TABLE INDEX" in str(row) for row in plan), plan
