"""Who the router would give a conversation to now, and why: a suggestion, nothing written.

The conversation page's assign picker shows it first (preselected), and
``GET /api/v1/conversations/{id}/suggestion`` answers it. It reads what the router reads
(``assignment.wanted_for``: the conversation's language and tags, the customer's previous
agent, its current assignee; the team snapshot's members on duty; their exact open loads)
and asks the router's rule, ``policy.choose``, so it never disagrees with the router about
who is best. The reason is the router's own words (``Choice.reason``: local time, the
customer's previous agent, speaks, knows, load of capacity) or, when nobody may take it,
``policy.nobody_free``'s. Nothing is locked, stamped or written: a person then assigns
with ``assignment.assign_to``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import utcnow
from inbox.assignment import open_loads
from inbox.conversations import get_conversation
from routing.assignment import wanted_for
from routing.policy import PolicyConfig, choose, nobody_free
from routing.snapshot import team_snapshot


@dataclass(frozen=True)
class Suggestion:
    """The router's pick for one conversation at ``at``; ``member_id`` None: nobody may
    take it now (``nobody`` is ``NobodyFree.kind``, ``reason`` says why in words)."""

    conversation_id: int
    at: datetime
    member_id: int | None
    name: str | None
    reason: str
    load: int | None = None  # their open conversations, this one not counted
    capacity: int | None = None
    previous_agent: bool = False
    speaks: str | None = None  # the customer's language, when they speak it
    knows: tuple[str, ...] = ()  # the conversation's tags they know
    nobody: str | None = None


async def suggest(
    session: AsyncSession,
    conversation_id: int,
    now: datetime | None = None,
    *,
    config: PolicyConfig | None = None,
    exclude: Iterable[int] = (),
) -> Suggestion:
    """The member ``policy.choose`` picks for the conversation at ``now``, with the reason;
    never one of ``exclude`` (handoff's proposal leaves out who hands it over).
    Raises ``ConversationNotFound``."""
    now = now or utcnow()
    config = config or PolicyConfig.from_settings()
    conversation = await get_conversation(session, conversation_id)
    wanted = await wanted_for(session, conversation, frozenset(exclude))
    snapshot = await team_snapshot(session, config)
    duty = snapshot.on_duty(now)
    # Exact loads of the members on duty (the snapshot's may be stale: they only rank).
    loads = await open_loads(session, config.per_channel, member_ids=[m.id for m in duty])

    def load_of(member_id: int, channel: str = "") -> int:
        return loads.get((member_id, channel), 0)

    choice = choose(duty, wanted, now, load_of, config)
    if choice is None:
        why = nobody_free(duty, wanted, now, load_of, config)
        return Suggestion(conversation_id, now, None, None, why.text(), nobody=why.kind)
    member = choice.member
    return Suggestion(
        conversation_id,
        now,
        member.id,
        member.name,
        choice.reason(wanted, now, config.per_channel),
        load=choice.load,
        capacity=member.capacity,
        previous_agent=choice.relationship,
        speaks=wanted.language if wanted.language and choice.speaks else None,
        knows=choice.knows,
    )
