"""Web app pages: the inbox (issue #16 "The inbox").

``/`` is the page, ``/inbox/rows`` the list fragment it re-fetches on the live ``inbox``
event. The listing is inbox's ``list_conversations`` (the REST API's too): views, filters
and search live there; this module only gathers what each row shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from crm_core import reads as crm_reads
from heliograph.db import utcnow
from heliograph.settings import get_settings
from inbox import listing
from inbox import reads as inbox_reads
from inbox.conversations import ConversationFilter, list_conversations
from inbox.models import Message
from routing import reads as routing_reads
from routing.models import TeamMember
from web.deps import ReadSessionDep
from web.ui.render import page
from web.ui.session import UiMemberDep

router = APIRouter(include_in_schema=False)
PRIORITIES = ("urgent", "high", "normal", "low")


def _shown_text(message: Message | None, member: TeamMember) -> str:
    """The last message in the agent's language: the original when they read it, else the
    stored text (the translation, when one was made)."""
    if message is None:
        return ""
    mine = {lang for lang in [member.ui_language, *(member.languages or [])] if lang}
    if message.original_text and message.original_language in mine:
        return message.original_text
    return message.text or message.original_text or ""


def _waited(since: datetime | None, now: datetime) -> int | None:
    """Minutes waited (the page shows them in the viewer's language: ``duration``)."""
    if since is None:
        return None
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    return max(0, int((now - since).total_seconds() // 60))


async def _rows(session: Any, member: TeamMember, f: ConversationFilter) -> list[dict[str, Any]]:
    conversations = await list_conversations(session, f)
    ids = [int(c.id) for c in conversations]  # type: ignore[arg-type]
    customers = await crm_reads.customers_by_id(session, [c.customer_id for c in conversations])
    last = await inbox_reads.last_messages(session, ids, 1) if ids else {}
    names = await routing_reads.member_names(
        session, [c.assignee_id for c in conversations if c.assignee_id]
    )
    targets = {p: m for p, m in get_settings().sla_first_response_minutes.items() if m and m > 0}
    now = utcnow()
    now_aware = now if now.tzinfo else now.replace(tzinfo=UTC)
    rows = []
    for c in conversations:
        customer = customers.get(c.customer_id)
        name = customer.display_name if customer else None
        message = (last.get(int(c.id)) or [None])[-1]  # type: ignore[arg-type]
        sla = listing.sla_state(c, now, targets)
        rows.append(
            {
                "id": c.id,
                "customer": crm_reads.label(c.customer_id, name),
                "timezone": customer.timezone if customer else None,
                "channel": c.channel,
                "status": c.status,
                "priority": c.priority,
                "tags": c.topic_tags or [],
                "language": c.language,
                "text": _shown_text(message, member),
                "waited": _waited(c.waiting_since, now_aware),
                "sla": sla[0] if sla else None,
                "sla_at": sla[1] if sla else None,
                "assignee": names.get(c.assignee_id) if c.assignee_id else None,
            }
        )
    return rows


def _filter(
    member: TeamMember,
    view: str | None,
    channel: str | None,
    language: str | None,
    priority: str | None,
    tag: str | None,
    assignee_id: int | None,
    q: str | None,
) -> ConversationFilter:
    return ConversationFilter(
        channel=channel or None,
        assignee_id=assignee_id,
        view=view if view in listing.VIEWS else "mine",
        member_id=member.id,
        language=language or None,
        priority=priority or None,
        tag=tag or None,
        q=q or None,
        limit=100,
    )


def _query(request: Request) -> str:
    return urlencode([(k, v) for k, v in request.query_params.multi_items() if v])


@dataclass
class InboxQuery:
    """The inbox's view, filters and search, as the page and its list fragment take them."""

    view: str = Query("mine", max_length=16)
    channel: str | None = Query(None, max_length=32)
    language: str | None = Query(None, max_length=16)
    priority: str | None = Query(None, max_length=16)
    tag: str | None = Query(None, max_length=64)
    assignee_id: str | None = Query(None, max_length=12)
    q: str | None = Query(None, max_length=200)

    @property
    def assignee(self) -> int | None:
        return int(self.assignee_id) if self.assignee_id and self.assignee_id.isdigit() else None

    def filter(self, member: TeamMember) -> Any:
        return _filter(
            member,
            self.view,
            self.channel,
            self.language,
            self.priority,
            self.tag,
            self.assignee,
            self.q,
        )


Asked = Annotated[InboxQuery, Depends()]


@router.get("/", response_class=HTMLResponse)
async def inbox(
    request: Request,
    member: UiMemberDep,
    session: ReadSessionDep,
    asked: Asked,
) -> HTMLResponse:
    f = asked.filter(member)
    members = await routing_reads.active_members(session)
    return page(
        request,
        "inbox.html",
        member,
        nav="inbox",
        rows=await _rows(session, member, f),
        view=f.view,
        views=listing.VIEWS,
        params={
            "channel": asked.channel or "",
            "language": asked.language or "",
            "priority": asked.priority or "",
            "tag": asked.tag or "",
            "assignee_id": asked.assignee,
            "q": asked.q or "",
        },
        priorities=PRIORITIES,
        members=members,
        query=_query(request),
    )


@router.get("/inbox/rows", response_class=HTMLResponse)
async def inbox_rows(
    request: Request,
    member: UiMemberDep,
    session: ReadSessionDep,
    asked: Asked,
) -> HTMLResponse:
    """The list alone (htmx re-fetches it on the live ``inbox`` event)."""
    f = asked.filter(member)
    return page(request, "inbox_rows.html", member, rows=await _rows(session, member, f))
