"""A customer's journey as one chronological list (newest first, keyset-paginated)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import audit
from heliograph.texts import Text
from inbox.models import Conversation, Message, Note


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # message.in, message.out, note, conversation.opened, conversation.resolved, merge
    conversation_id: int | None
    summary: str
    data: dict[str, Any]


# More of the profile's history from packages the inbox does not read itself (the CRM's
# events, journey and interventions; routing's assignments and handoffs): each source
# returns up to ``limit`` entries older than ``before``.
TimelineSource = Callable[[AsyncSession, int, datetime | None, int], Awaitable[list[TimelineEntry]]]
timeline_sources: list[TimelineSource] = []


async def customer_timeline(
    session: AsyncSession, customer_id: int, before: datetime | None, limit: int
) -> list[TimelineEntry]:
    def older(column: Any) -> Any:
        return column < before if before is not None else column.is_not(None)

    entries: list[TimelineEntry] = []
    messages = await session.execute(
        select(Message)
        .where(Message.customer_id == customer_id, older(Message.created_at))
        .order_by(Message.created_at.desc())  # type: ignore[attr-defined]
        .limit(limit)
    )
    for m in messages.scalars():
        entries.append(
            TimelineEntry(
                m.created_at,
                f"message.{m.direction}",
                m.conversation_id,
                m.text[:200],
                {"message_id": m.id, "channel": m.channel, "status": m.delivery_status},
            )
        )
    conversations = (
        (await session.execute(select(Conversation).where(Conversation.customer_id == customer_id)))
        .scalars()
        .all()
    )
    by_id = {c.id: c for c in conversations}
    for c in conversations:
        if before is None or c.created_at < before:
            entries.append(
                TimelineEntry(
                    c.created_at,
                    "conversation.opened",
                    c.id,
                    Text("on %(channel)s", channel=c.channel),
                    {},
                )
            )
        if c.resolved_at and (before is None or c.resolved_at < before):
            entries.append(TimelineEntry(c.resolved_at, "conversation.resolved", c.id, "", {}))
    if by_id:
        notes = await session.execute(
            select(Note)
            .where(Note.conversation_id.in_(list(by_id)), older(Note.created_at))  # type: ignore[attr-defined]
            .order_by(Note.created_at.desc())  # type: ignore[attr-defined]
            .limit(limit)
        )
        for n in notes.scalars():
            entries.append(
                TimelineEntry(
                    n.created_at, "note", n.conversation_id, n.text[:200], {"note_id": n.id}
                )
            )
    for a in await audit.events_of(session, "customer", customer_id, before=before):
        entries.append(TimelineEntry(a.at, a.action, None, a.actor, a.details))
    for source in timeline_sources:
        entries.extend(await source(session, customer_id, before, limit))
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
