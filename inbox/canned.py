"""Canned responses (issue #16): saved replies, team-wide or personal, with placeholders.

Anyone may keep personal ones; leads and admins keep the team's. ``fill`` puts the
customer's and the agent's names in; an unknown placeholder stays visible and is reported
(``Filled.unknown``), never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import reads as crm_reads
from heliograph.db import utcnow
from heliograph.texts import Text
from inbox.conversations import InvalidRequest, get_conversation
from inbox.models import CannedResponse

TEAM_ROLES = ("lead", "admin")
SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")


class CannedNotFound(LookupError):
    """No canned response with that id (or shortcut) that this member may see."""


class CannedForbidden(PermissionError):
    """The member may not change this canned response."""


@dataclass
class Filled:
    text: str
    unknown: list[str] = field(default_factory=list)


def _is_team_editor(member: Any) -> bool:
    return getattr(member, "role", None) in TEAM_ROLES


def _visible(member: Any) -> Any:
    return or_(
        CannedResponse.owner_member_id.is_(None),  # type: ignore[union-attr]
        CannedResponse.owner_member_id == member.id,
    )


def _clean(
    shortcut: str, title: str, text: str, language: str | None
) -> tuple[str, str, str, str | None]:
    shortcut = (shortcut or "").strip().lstrip("/").lower()
    if not SHORTCUT.match(shortcut):
        raise InvalidRequest(
            Text(
                "shortcut: 1-64 lower-case letters, digits, '-' or '_', starting with a letter "
                "or digit"
            )
        )
    title = (title or "").strip()
    if not title or len(title) > 200:
        raise InvalidRequest(Text("title: 1-200 characters"))
    if not (text or "").strip():
        raise InvalidRequest(Text("text: a canned response needs some text"))
    language = (language or "").strip().lower() or None
    if language is not None and not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})?", language):
        raise InvalidRequest(Text("language: an ISO 639-1 code such as 'pt', or empty for any"))
    return shortcut, title, text, language


async def _check_unique(
    session: AsyncSession, shortcut: str, owner_id: int | None, except_id: int | None = None
) -> None:
    stmt = select(CannedResponse.id).where(CannedResponse.shortcut == shortcut)
    if owner_id is None:
        stmt = stmt.where(CannedResponse.owner_member_id.is_(None))  # type: ignore[union-attr]
    else:
        stmt = stmt.where(CannedResponse.owner_member_id == owner_id)
    if except_id is not None:
        stmt = stmt.where(CannedResponse.id != except_id)
    if (await session.exec(stmt)).first() is not None:
        if owner_id is None:
            used = Text("shortcut '/%(shortcut)s' is already used by the team", shortcut=shortcut)
        else:
            used = Text("shortcut '/%(shortcut)s' is already used by you", shortcut=shortcut)
        raise InvalidRequest(used)


def _may_edit(member: Any, row: CannedResponse) -> bool:
    if row.owner_member_id is None:
        return _is_team_editor(member)
    return row.owner_member_id == member.id


async def create(
    session: AsyncSession,
    member: Any,
    *,
    shortcut: str,
    title: str,
    text: str,
    language: str | None = None,
    team: bool = False,
) -> CannedResponse:
    """Store a canned response in the caller's transaction (flushed, not committed)."""
    if team and not _is_team_editor(member):
        raise CannedForbidden(Text("only leads and admins keep the team's canned responses"))
    shortcut, title, text, language = _clean(shortcut, title, text, language)
    owner = None if team else member.id
    await _check_unique(session, shortcut, owner)
    row = CannedResponse(
        shortcut=shortcut,
        title=title,
        text=text,
        language=language,
        owner_member_id=owner,
        created_by=member.id,
    )
    session.add(row)
    await session.flush()
    return row


async def get(session: AsyncSession, member: Any, canned_id: int) -> CannedResponse:
    row = await session.get(CannedResponse, canned_id)
    if row is None or (row.owner_member_id is not None and row.owner_member_id != member.id):
        raise CannedNotFound(Text("canned response %(id)s not found", id=canned_id))
    return row


async def update(
    session: AsyncSession,
    member: Any,
    canned_id: int,
    *,
    shortcut: str | None = None,
    title: str | None = None,
    text: str | None = None,
    language: str | None = None,
    set_language: bool = False,
) -> CannedResponse:
    """Change the given fields; ``set_language`` says that ``language`` (even None) is meant."""
    row = await get(session, member, canned_id)
    if not _may_edit(member, row):
        raise CannedForbidden(Text("only leads and admins change the team's canned responses"))
    new_shortcut, new_title, new_text, new_language = _clean(
        row.shortcut if shortcut is None else shortcut,
        row.title if title is None else title,
        row.text if text is None else text,
        language if set_language else row.language,
    )
    if new_shortcut != row.shortcut:
        await _check_unique(session, new_shortcut, row.owner_member_id, row.id)
    row.shortcut, row.title, row.text, row.language = (
        new_shortcut,
        new_title,
        new_text,
        new_language,
    )
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()
    return row


async def delete(session: AsyncSession, member: Any, canned_id: int) -> None:
    row = await get(session, member, canned_id)
    if not _may_edit(member, row):
        raise CannedForbidden(Text("only leads and admins delete the team's canned responses"))
    await session.delete(row)
    await session.flush()


async def list_for(session: AsyncSession, member: Any) -> list[CannedResponse]:
    """The team's canned responses and the member's own, by shortcut."""
    rows = await session.exec(
        select(CannedResponse)
        .where(_visible(member))
        .order_by(CannedResponse.shortcut, CannedResponse.owner_member_id)  # type: ignore[arg-type]
    )
    return list(rows.all())


async def search(
    session: AsyncSession,
    member: Any,
    query: str,
    limit: int = 8,
    language: str | None = None,
) -> list[CannedResponse]:
    """Team + own personal canned responses matching ``query`` in shortcut, title or text.

    Ranked: exact shortcut, shortcut prefix, title, text; within a rank those in
    ``language`` (the conversation's) come first, then those for any language, then others;
    a personal one before a team one with the same shortcut.
    """
    q = (query or "").strip().lstrip("/").lower()
    rows = await list_for(session, member)
    ranked = []
    for row in rows:
        shortcut, title, text = row.shortcut.lower(), row.title.lower(), row.text.lower()
        if not q:
            rank = 3
        elif shortcut == q:
            rank = 0
        elif shortcut.startswith(q):
            rank = 1
        elif q in shortcut or q in title:
            rank = 2
        elif q in text:
            rank = 3
        else:
            continue
        if language and row.language == language:
            lang_rank = 0
        elif row.language is None:
            lang_rank = 1
        else:
            lang_rank = 2 if language else 0
        own = 0 if row.owner_member_id is not None else 1
        ranked.append(((rank, lang_rank, own, row.shortcut, row.id or 0), row))
    ranked.sort(key=lambda pair: pair[0])
    return [row for _, row in ranked[:limit]]


async def by_shortcut(
    session: AsyncSession, member: Any, shortcut: str, language: str | None = None
) -> CannedResponse:
    """The member's canned response for ``/shortcut`` (their own before the team's)."""
    found = [
        row
        for row in await search(session, member, shortcut, limit=50, language=language)
        if row.shortcut == shortcut.strip().lstrip("/").lower()
    ]
    if not found:
        raise CannedNotFound(f"no canned response '/{shortcut.strip().lstrip('/')}'")
    return found[0]


def _first(name: str | None) -> str:
    return (name or "").strip().split(" ")[0] if name and name.strip() else ""


def _value(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def fill_report(text: str, customer: Any, agent: Any) -> Filled:
    """``text`` with its placeholders filled; the unknown ones stay as written and are listed."""
    customer_name = _value(customer, "name") or _value(customer, "display_name") or ""
    agent_name = _value(agent, "name") or ""
    values = {
        "customer.name": customer_name,
        "customer.first_name": _value(customer, "first_name") or _first(customer_name),
        "customer.email": _value(customer, "email") or "",
        "agent.name": agent_name,
        "agent.first_name": _value(agent, "first_name") or _first(agent_name),
    }
    unknown: list[str] = []

    def swap(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return str(values[key])
        if key not in unknown:
            unknown.append(key)
        return match.group(0)

    return Filled(PLACEHOLDER.sub(swap, text), unknown)


def fill(text: str, customer: Any, agent: Any) -> str:
    """``text`` with {{customer.first_name}}, {{customer.name}}, {{customer.email}},
    {{agent.name}} and {{agent.first_name}} filled; an unknown placeholder stays visible."""
    return fill_report(text, customer, agent).text


@dataclass
class CustomerView:
    name: str
    email: str | None


async def customer_of(
    session: AsyncSession, conversation_id: int
) -> tuple[CustomerView, str | None]:
    """The conversation's customer for ``fill`` (name, first e-mail) and its language."""
    conversation = await get_conversation(session, conversation_id)
    customers = await crm_reads.customers_by_id(session, [conversation.customer_id])
    customer = customers.get(conversation.customer_id)
    contacts = await crm_reads.contacts_by_customer(session, [conversation.customer_id])
    email = next(
        (p.value for p in contacts.get(conversation.customer_id, []) if p.kind == "email"), None
    )
    name = customer.display_name if customer is not None else ""
    return CustomerView(name=name or "", email=email), conversation.language


async def filled_for(
    session: AsyncSession, member: Any, conversation_id: int, shortcut: str
) -> Filled:
    """The member's ``/shortcut`` filled for this conversation (CannedNotFound if none)."""
    customer, language = await customer_of(session, conversation_id)
    row = await by_shortcut(session, member, shortcut, language=language)
    return fill_report(row.text, customer, member)


COMMAND = re.compile(r"^\s*/canned(?:\s+(\S+))?\s*$", re.IGNORECASE | re.DOTALL)


def command_shortcut(text: str) -> str | None:
    """The shortcut of a chat message ``/canned <shortcut>``; "" for a bare ``/canned``;
    None when the message is no such command (an ordinary reply)."""
    match = COMMAND.match(text or "")
    if match is None:
        return None
    return (match.group(1) or "").lstrip("/").lower()


async def command_text(
    session: AsyncSession, member: Any, conversation_id: int, shortcut: str
) -> Filled:
    """What ``/canned <shortcut>`` sends in this conversation; CannedNotFound says why not."""
    if not shortcut:
        raise CannedNotFound("say which one: /canned <shortcut>")
    return await filled_for(session, member, conversation_id, shortcut)
