"""Routing a batch of messages together (``route_conversations``, the ``routing.route`` job)
comes to the same outcomes as routing them one by one: assignees, topic tags, priorities,
history rows and reasons, queue waits and notices, and the jobs they publish."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Customer
from heliograph.db import Database
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import set_status
from inbox.models import Conversation, Message
from routing import snapshot
from routing.models import Assignment, RoutingWait
from routing.queue import Inbound, route_conversation, route_conversations
from tests.utils.routing_world import customer_writes, give, team, utc, weekdays

MONDAY_NOON = utc(2026, 6, 8, 12, 0)  # 21:00 in Tokyo: Aiko is off shift
TEAM = (
    {"name": "Ann", "languages": ("en",), "expertise": ("billing",), "capacity": 2},
    {"name": "Ben", "languages": ("fr", "en"), "expertise": ("technical",), "capacity": 2},
    {"name": "Cyd", "languages": ("en",), "capacity": 1},
    {
        "name": "Aiko",
        "timezone": "Asia/Tokyo",
        "hours": weekdays(["08:20", "17:00"]),
        "languages": ("ja", "en"),
    },
)


_NEW_IDS = ("assignment_id", "message_id")


@pytest.fixture
def topic_keywords(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(
        "HELIOGRAPH_ROUTING_TOPIC_KEYWORDS",
        '{"billing": ["invoice", "refund*"], "technical": ["error", "crash*"]}',
    )
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


async def _world(database: Database) -> list[Inbound]:
    """Ten messages: new conversations in several languages and topics, a VIP, one already
    assigned, one resolved, one reopened whose agent sleeps, a conversation with two
    messages; more than the team can take, so some wait in the queue."""
    ids = await team(database, *TEAM)
    writes = [
        ("m1", "c1", "my invoice is wrong", "en"),
        ("m2", "c2", "the app shows an error", "fr"),
        ("m3", "c3", "hello", "ja"),
        ("m4", "c4", "where is my refund", "en"),
        ("m5", "c5", "hi there", "en"),
        ("m6", "c6", "bonjour", "fr"),
        ("m7", "c7", "it crashed again", "en"),
        ("m8", "c8", "konnichiwa", "ja"),
        ("m9", "c9", "anyone?", "en"),
        ("m10", "c1", "also a refund please", "en"),
    ]
    sent = [
        await customer_writes(database, m, c, text, language=lang) for m, c, text, lang in writes
    ]
    async with database.session() as session:
        await session.execute(
            update(Customer).where(Customer.id == sent[4].customer_id).values(vip=True)  # type: ignore[arg-type]
        )
        await set_status(session, sent[5].conversation_id, "resolved")
        await session.commit()
    await give(database, sent[6].conversation_id, ids["Ann"], MONDAY_NOON)  # assigned already
    await give(database, sent[8].conversation_id, ids["Aiko"], MONDAY_NOON)  # asleep now
    reopened = {sent[8].message_id}
    return [Inbound(s.conversation_id, s.message_id, s.message_id in reopened) for s in sent]


async def _state(session: AsyncSession, conversation_ids: list[int]) -> dict[str, Any]:
    await session.flush()
    conversations = (
        await session.execute(
            select(Conversation).where(Conversation.id.in_(conversation_ids))  # type: ignore[union-attr]
        )
    ).scalars()
    history = await session.execute(
        select(
            Assignment.conversation_id,
            Assignment.kind,
            Assignment.member_id,
            Assignment.previous_member_id,
            Assignment.reason,
        ).order_by(Assignment.conversation_id, Assignment.id)  # type: ignore[arg-type]
    )
    waits = await session.execute(
        select(
            RoutingWait.conversation_id,
            RoutingWait.reason,
            RoutingWait.promised_at,
            RoutingWait.notified_at,
        ).order_by(RoutingWait.conversation_id)  # type: ignore[arg-type]
    )
    notices = await session.execute(
        select(Message.conversation_id, Message.text)
        .where(Message.author_type == "system")
        .order_by(Message.conversation_id, Message.id)  # type: ignore[arg-type]
    )
    published = await session.execute(select(Job.kind, Job.payload, Job.run_at, Job.dedupe_key))
    return {
        "conversations": sorted(
            (c.id, c.assignee_id, c.status, c.priority, list(c.topic_tags)) for c in conversations
        ),
        "history": [tuple(r) for r in history.all()],
        "waits": [tuple(r) for r in waits.all()],
        "notices": [tuple(r) for r in notices.all()],
        "jobs": sorted(
            repr(
                (
                    kind,
                    # New rows' ids differ (PostgreSQL's sequences do not roll back).
                    sorted((k, v) for k, v in payload.items() if k not in _NEW_IDS),
                    run_at if kind == "routing.drain" else None,  # the promised instant
                    None if kind == "outbox.deliver" else key,
                )
            )
            for kind, payload, run_at, key in published.all()
        ),
    }


async def _routed(database: Database, inbound: list[Inbound], together: bool) -> dict[str, Any]:
    """Route, read what it wrote, and roll it back (the next way starts from the same)."""
    snapshot.invalidate()
    ids = sorted({i.conversation_id for i in inbound})
    async with database.session() as session:
        if together:
            await route_conversations(session, inbound, now=MONDAY_NOON)
        else:
            for i in sorted(inbound, key=lambda i: (i.conversation_id, i.message_id)):
                await route_conversation(
                    session,
                    i.conversation_id,
                    message_id=i.message_id,
                    reopened=i.reopened,
                    now=MONDAY_NOON,
                )
        state = await _state(session, ids)
        await session.rollback()
    snapshot.invalidate()
    return state


async def test_a_batch_routes_like_one_message_at_a_time(
    database: Database, topic_keywords: None
) -> None:
    inbound = await _world(database)
    one_by_one = await _routed(database, inbound, together=False)
    together = await _routed(database, inbound, together=True)
    for key, value in one_by_one.items():
        assert together[key] == value, key

    # And the outcomes are the policy's: the world above exercises every branch.
    by_id = {c[0]: c for c in together["conversations"]}
    first, second, _, _, vip, resolved, kept, _, full = (
        by_id[i.conversation_id] for i in inbound[:9]
    )
    assert first[4] == ["billing"] and second[4] == ["technical"]
    assert vip[3] == "high"
    assert resolved[2] == "resolved" and resolved[1] is None
    assert kept[1] is not None and kept[4] == ["technical"]
    assert full[1] is None  # reopened while Aiko sleeps, everyone else full: the queue
    kinds = [h[1] for h in together["history"]]
    assert "policy" in kinds and "queued" in kinds
    assert together["waits"], "more messages than the team can take: some wait"
    assert together["notices"]  # "everyone on shift is helping other customers"
