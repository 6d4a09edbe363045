"""Routing and the team's own writes on PostgreSQL: an agent's reply that arrives while
routing holds its conversation waits for routing and then goes through; neither is rolled
back as a deadlock.

The reply's INSERT checks its foreign keys, holding ``KEY SHARE`` on the agent's row, and
then waits for the conversation that routing has locked; routing then locks the agents it
weighs. Locked ``FOR UPDATE`` that wait closed a cycle and PostgreSQL rolled one of them
back ("deadlock detected": a 503 for the agent, a retried routing job); ``FOR NO KEY UPDATE``
(what PostgreSQL's own UPDATE of a non-key column takes) queues routing's work just as
well and lets the check through. SQLite runs one writer at a time and has no such cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import Database, utcnow
from inbox import conversations
from inbox.assignment import lock_conversations
from routing import snapshot
from routing.assignment import confirm, lock_many_for_routing
from routing.batch import assign_batch
from routing.policy import MemberView, PolicyConfig
from routing.team import get_member
from tests.utils.db import a_lock_waits
from tests.utils.processes import eventually
from tests.utils.routing_world import customer_writes, team

Lock = Callable[[AsyncSession, int], Awaitable[None]]
Route = Callable[[AsyncSession, int, int], Awaitable[int | None]]


async def _reply_while_routing_holds_it(
    database: Database, lock: Lock, route: Route
) -> tuple[int | None, list[str]]:
    """Routing locks the conversation (``lock``); the agent replies and waits; routing goes
    on (``route``: whom it chose) and commits. Returns that and the conversation's replies."""
    snapshot.invalidate()
    ids = await team(database, {"name": "Ana Lima"})
    written = await customer_writes(database, "m-1", sender="cust-1")
    cid, agent = written.conversation_id, ids["Ana"]

    async def agent_replies() -> None:
        async with database.session() as session:
            await conversations.reply(session, cid, "on it", author_id=agent)
            await session.commit()

    async with database.session() as routing:
        await lock(routing, cid)
        reply = asyncio.create_task(agent_replies())
        await eventually("the reply waits for routing", lambda: a_lock_waits(database), 15)
        chosen = await route(routing, cid, agent)
        await routing.commit()
    await asyncio.wait_for(reply, 30)  # re-raises the reply's "deadlock detected" if any
    async with database.read_session() as session:
        stored = await conversations.messages_of(session, cid)
    return chosen, [m.text for m in stored if m.direction == "out"]


async def test_a_reply_while_one_conversation_is_routed_waits_and_both_go_through(
    pg_database: Database,
) -> None:
    locked = {}

    async def lock(session: AsyncSession, cid: int) -> None:
        locked.update(await lock_many_for_routing(session, [cid]))

    async def route(session: AsyncSession, cid: int, agent: int) -> int | None:
        view = MemberView.of(await get_member(session, agent))
        load = await confirm(session, view, locked[cid].conversation, utcnow(), PolicyConfig())
        return agent if load is not None else None

    chosen, texts = await _reply_while_routing_holds_it(pg_database, lock, route)
    assert chosen is not None  # routing could take Ana (her row locked, her load counted)
    assert texts == ["on it"]  # and her reply is stored


async def test_a_reply_while_a_batch_is_routed_waits_and_both_go_through(
    pg_database: Database,
) -> None:
    held = []

    async def lock(session: AsyncSession, cid: int) -> None:
        held.extend(await lock_conversations(session, [cid]))

    async def route(session: AsyncSession, cid: int, agent: int) -> int | None:
        (routed,) = await assign_batch(session, held)  # locks every agent on duty
        return routed.member_id

    chosen, texts = await _reply_while_routing_holds_it(pg_database, lock, route)
    assert chosen is not None
    assert texts == ["on it"]
