"""A deactivated member's open conversations go back to the queue, and on to whoever is
eligible now.

``routing.team.set_active`` (the CLI's ``deactivate``, the admin API, ``import-team``)
enqueues ``RELEASE_MEMBER`` in the transaction that deactivates. As Zendesk and Front do with
a deactivated agent's open tickets, each conversation is unassigned (history kind
``queued``, with the reason), then the queue is drained: the policy, which passes over
inactive members, gives them to someone eligible, or they wait for the next shift start.
The handler acts only on what is still true: a member activated again before it runs
keeps their conversations, and a conversation moved meanwhile stays where it is.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jobs
from heliograph.db import get_db, utcnow
from heliograph.texts import Text
from inbox.assignment import lock_conversations, open_conversations_of
from routing.bus import RELEASE_MEMBER, ReleaseMember
from routing.history import OwnerChange, record_many
from routing.models import TeamMember
from routing.queue import drain_queue


async def release_conversations(
    session: AsyncSession, member_id: int, now: datetime | None = None
) -> int:
    """Unassign an inactive member's open conversations; how many. The caller commits."""
    now = now or utcnow()
    member = await session.get(TeamMember, member_id)
    if member is None or member.active:
        return 0
    held = [c.id for c in await open_conversations_of(session, member_id)]
    conversations = [
        c
        for c in await lock_conversations(session, held)  # type: ignore[arg-type]
        if c.assignee_id == member_id
    ]
    reason = Text("back to the queue: %(name)s was deactivated", name=member.name)
    changes = [OwnerChange(conversation, None, reason) for conversation in conversations]
    await record_many(session, changes, "queued", now=now)
    return len(conversations)


@jobs.handler(RELEASE_MEMBER)
async def release(payload: ReleaseMember) -> None:
    db = get_db()
    async with db.session() as session:
        released = await release_conversations(session, payload.member_id)
        await session.commit()
    if released:
        await drain_queue(db)
        jobs.wake_workers()
