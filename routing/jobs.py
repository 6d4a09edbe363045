"""Routing's listeners and periodic work (registered when this module is imported).

- ``message.received`` -> ``routing.route``: tag, prioritise, assign or queue.
- ``conversation.status_changed`` -> ``routing.status_changed``: a resolved conversation
  frees its agent's capacity (drain the queue now); one reopened from resolved is
  routed again like a reopened message.
- ``routing.drain`` (enqueued when someone comes online and at promised shift starts).
- every 30 s: drain the queue; every 60 s: re-route unanswered assignments.

Every handler is idempotent: it re-reads the conversation under its lock and acts only
on what is still true (assigned conversations stay put; a notice goes once per wait).
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jobs
from heliograph.db import Database, get_db
from heliograph.scheduler import every
from inbox import path_times, translation
from inbox.bus import (
    CONVERSATION_STATUS_CHANGED,
    MESSAGE_RECEIVED,
    ConversationStatusChanged,
    MessageReceived,
)
from inbox.conversations import ConversationNotFound, get_conversation
from routing.bus import DRAIN, ROUTE, STATUS_CHANGED, Drain
from routing.models import RoutingWait, TeamMember
from routing.queue import (
    Inbound,
    drain_queue,
    reroute_unanswered,
    route_conversation,
    route_conversations,
)

ROUTE_BATCH = 25  # messages routed per transaction: on SQLite the write lock stays short


@jobs.batch_handler(ROUTE, size=ROUTE_BATCH)
async def route(batch: jobs.Batch[MessageReceived]) -> None:
    """Route the due messages together (``route_conversations``: one locking read, one
    policy pass): one transaction, one commit that also completes their jobs. Conversations
    go in id order (every worker takes the row locks in the same order, so two batches
    never deadlock), each conversation's messages in arrival order."""
    payloads = batch.payloads
    async with get_db().session() as session:
        found = await route_conversations(
            session, [Inbound(p.conversation_id, p.message_id, p.reopened) for p in payloads]
        )
        for i, p in enumerate(payloads):
            if p.conversation_id not in found:
                batch.fail(
                    i, ConversationNotFound(f"conversation {p.conversation_id} does not exist")
                )
        routed = [payloads[i].message_id for i in batch.succeeded()]
        await path_times.mark_routed(session, routed)  # the decision
        await batch.complete_in(session)
        await session.commit()
    jobs.wake_workers()


@jobs.handler(STATUS_CHANGED)
async def status_changed(payload: ConversationStatusChanged) -> None:
    db = get_db()
    if payload.to == "resolved":
        async with db.session() as session:
            conversation = await get_conversation(session, payload.conversation_id)
            freed = conversation.assignee_id is not None
            # A resolved conversation no longer waits; a later reopen is a new wait.
            await session.execute(
                delete(RoutingWait).where(
                    RoutingWait.conversation_id == payload.conversation_id  # type: ignore[arg-type]
                )
            )
            await session.commit()
        if freed:  # its agent has room for one more now
            await drain_queue(db)
    elif payload.from_ == "resolved":
        async with db.session() as session:
            await route_conversation(session, payload.conversation_id, reopened=True)
            await session.commit()
        jobs.wake_workers()


@jobs.handler(DRAIN)
async def drain(_: Drain) -> None:
    await drain_queue(get_db())


jobs.subscribe(MESSAGE_RECEIVED, ROUTE)
jobs.subscribe(CONVERSATION_STATUS_CHANGED, STATUS_CHANGED)


@every(30)
async def drain_routing_queue(db: Database) -> int:
    return await drain_queue(db)


@every(60)
async def reroute_unanswered_conversations(db: Database) -> int:
    return await reroute_unanswered(db)


async def _member_languages(session: AsyncSession, member_id: int) -> list[str]:
    """What an agent reads: translation turns customers' words into one of these."""
    member = await session.get(TeamMember, member_id)
    return list(member.languages) if member else []


translation.register_reader_languages(_member_languages)
