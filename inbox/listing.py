"""The inbox list (issue #16): one rule for the web app's inbox page and ``GET
/api/v1/conversations`` — views, filters and search — plus each row's SLA state.

``ConversationFilter`` (inbox/conversations.py) carries the fields; ``where`` turns them
into conditions; ``sla_state`` reads the same first-response rule as ``inbox.reads._late``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, exists, func, or_
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import search_customers
from inbox.models import Conversation, Message

VIEWS = ("mine", "unassigned", "all", "waiting", "snoozed", "resolved")


def view_conditions(view: str | None, member_id: int | None) -> list[Any]:
    """mine: my unresolved; unassigned: the queue (open, nobody's); waiting: on the
    customer (pending); snoozed; resolved; all (or None): everything."""
    c = Conversation
    if view == "mine":
        return [c.assignee_id == member_id, c.status != "resolved"]
    if view == "unassigned":
        return [c.assignee_id.is_(None), c.status == "open"]  # type: ignore[union-attr]
    if view == "waiting":
        return [c.status == "pending"]
    if view in ("snoozed", "resolved"):
        return [c.status == view]
    return []


async def search_conditions(session: AsyncSession, q: str | None) -> list[Any]:
    """Customer name, email or phone (crm_core's search) or any message's text."""
    q = (q or "").strip()
    if not q:
        return []
    customer_ids = [int(x.id) for x in await search_customers(session, q, limit=200)]  # type: ignore[arg-type]
    pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    text_match = exists().where(
        Message.conversation_id == Conversation.id,
        or_(
            func.lower(Message.text).like(pattern, escape="\\"),
            func.lower(func.coalesce(Message.original_text, "")).like(pattern, escape="\\"),
        ),
    )
    options: list[Any] = [text_match]
    if customer_ids:
        options.append(Conversation.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
    return [or_(*options)]


def tag_condition(tag: str) -> Any:
    """``topic_tags`` (a JSON list) holds ``tag``: its JSON text has ``"tag"``."""
    needle = '%"' + tag.replace('"', "") + '"%'
    return cast(Conversation.topic_tags, String).like(needle)


def sla_state(
    conversation: Conversation, now: datetime, targets: Mapping[str, float]
) -> tuple[str, datetime] | None:
    """("late" | "due", the moment) for an unanswered open conversation whose priority has a
    first-response target; None otherwise (as ``inbox.reads._late`` counts it)."""
    minutes = targets.get(conversation.priority)
    if (
        not minutes
        or conversation.status not in ("open", "pending")
        or conversation.first_response_at is not None
    ):
        return None
    due = conversation.created_at + timedelta(minutes=minutes)
    return ("late" if due <= now else "due", due)
