"""The context package a receiver reads first: who the customer is, what was said, what
is awaited. The summary is extractive: quoted from the conversation's own messages and
timestamps, never generated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytz
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import reads as crm_reads
from crm_core.models import Customer
from heliograph.db import utcnow
from heliograph.settings import get_settings
from inbox import reads as inbox_reads
from inbox.models import Conversation, Message
from routing import reads as routing_reads

QUOTE_CHARS = 280
CHUNK = 500  # conversations per round of queries (keeps IN lists short)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=pytz.UTC)


def _quote(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def _waited(seconds: float) -> str:
    minutes = int(max(0.0, seconds) // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def customer_line(customer: Customer, now: datetime) -> dict[str, Any]:
    zone = customer.timezone
    local = None
    if zone:
        try:
            local = now.astimezone(pytz.timezone(zone))
        except pytz.UnknownTimeZoneError:
            local = None
    name = customer.display_name or f"customer {customer.id}"
    value = str(customer.lifetime_value) if customer.lifetime_value is not None else None
    parts = [name]
    parts.append(f"{local:%H:%M} local ({zone})" if local else "local time unknown")
    parts.append(f"language {customer.language or 'unknown'}")
    parts.append(f"stage {customer.journey_stage}")
    parts.append(f"value {value or '0'}")
    return {
        "id": customer.id,
        "name": name,
        "timezone": zone,
        "local_time": f"{local:%H:%M}" if local else None,
        "local_datetime": local.isoformat() if local else None,
        "language": customer.language,
        "journey_stage": customer.journey_stage,
        "lifetime_value": value,
        "line": " · ".join(parts),
    }


def extractive_summary(
    messages: list[Message], customer_name: str, now: datetime
) -> tuple[str, str | None]:
    """``(paragraph, awaiting)``: awaiting is "us" (the customer's word is last), "customer"
    (ours is), or None (no messages). Built only from the messages themselves."""
    prefix = "Extractive summary (quoted from the conversation, not generated): "
    spoken = [m for m in messages if m.author_type in ("customer", "agent")]
    if not spoken:
        return prefix + "no messages yet.", None
    last = spoken[-1]
    if last.author_type == "customer":
        pending: list[Message] = []
        for m in reversed(spoken):
            if m.author_type != "customer":
                break
            pending.append(m)
        pending.reverse()
        since = _aware(pending[0].created_at)
        quotes = " ".join(f'"{_quote(m.text)}"' for m in pending[-3:])
        more = f" (the last 3 of {len(pending)})" if len(pending) > 3 else ""
        answered = any(m.author_type == "agent" for m in spoken)
        return (
            prefix
            + f"the last word is {customer_name}'s; {len(pending)} message(s) not yet answered"
            + f", waiting {_waited((now - since).total_seconds())}"
            + f" (since {since:%Y-%m-%d %H:%M} UTC)"
            + f"{more}: {quotes}."
            + ("" if answered else " We have not replied in this conversation yet."),
            "us",
        )
    at = _aware(last.created_at)
    asked = next((m for m in reversed(spoken) if m.author_type == "customer"), None)
    asked_part = f' Their last message was: "{_quote(asked.text)}".' if asked else ""
    return (
        prefix
        + f"the last word was ours ({_waited((now - at).total_seconds())} ago): "
        + f'"{_quote(last.text)}";'
        + f" awaiting {customer_name}'s reply.{asked_part}",
        "customer",
    )


async def _open_interventions(
    session: AsyncSession, customer_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    found = await crm_reads.open_interventions(session, customer_ids)
    return {
        customer_id: [
            {
                "id": i.id,
                "rule": i.rule,
                "reason": i.reason,
                "reason_text": i.reason_text,  # the reason for the web app to translate
                "suggested_message": i.suggested_message,
                "created_at": _aware(i.created_at).isoformat(),
            }
            for i in interventions
        ]
        for customer_id, interventions in found.items()
    }


async def build_context_packages(
    session: AsyncSession,
    conversations: list[Conversation],
    *,
    now: datetime | None = None,
    limit: int | None = None,
) -> dict[int, dict[str, Any]]:
    """Context packages for many conversations in a handful of queries (a shift change
    moves thousands): ``{conversation_id: package}``."""
    now = now or utcnow()
    limit = limit or get_settings().handoff_messages
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(conversations), CHUNK):
        chunk = conversations[start : start + CHUNK]
        found.update(await _packages(session, chunk, now, limit))
    return found


async def _packages(
    session: AsyncSession, conversations: list[Conversation], now: datetime, limit: int
) -> dict[int, dict[str, Any]]:
    ids = [c.id for c in conversations]
    customer_ids = list({c.customer_id for c in conversations})
    customers = await crm_reads.customers_by_id(session, customer_ids)
    messages = await inbox_reads.last_messages(session, ids, limit)  # type: ignore[arg-type]
    notes = await inbox_reads.notes_of(session, ids)  # type: ignore[arg-type]
    names = await routing_reads.member_names(
        session,
        {m.author_id for ms in messages.values() for m in ms if m.author_id}
        | {n.author_id for ns in notes.values() for n in ns if n.author_id},
    )
    interventions = await _open_interventions(session, customer_ids)
    found = {}
    for conversation in conversations:
        customer = customers.get(conversation.customer_id)
        line = (
            customer_line(customer, now)
            if customer is not None
            else {"id": conversation.customer_id, "name": f"customer {conversation.customer_id}"}
        )
        said = messages.get(conversation.id, [])  # type: ignore[arg-type]
        summary, awaiting = extractive_summary(said, str(line["name"]), now)
        found[conversation.id] = {
            "conversation_id": conversation.id,
            "channel": conversation.channel,
            "subject": conversation.subject,
            "priority": conversation.priority,
            "customer": line,
            "messages": [
                {
                    "id": m.id,
                    "author": _author(m, str(line["name"]), names),
                    "author_type": m.author_type,
                    "direction": m.direction,
                    "text": m.text,
                    # what the customer wrote, when ``text`` is its translation
                    "original": m.original_text if m.original_text != m.text else None,
                    "original_language": m.original_language,
                    "at": _aware(m.created_at).isoformat(),
                }
                for m in said
            ],
            "interventions": interventions.get(conversation.customer_id, []),
            "notes": [
                {
                    "author": names.get(n.author_id or 0, "system"),
                    "text": n.text,
                    "at": _aware(n.created_at).isoformat(),
                }
                for n in notes.get(conversation.id, [])  # type: ignore[arg-type]
            ],
            "awaiting": awaiting,
            "summary": summary,
            "summary_kind": "extractive",
            "built_at": now.isoformat(),
        }
    return found  # type: ignore[return-value]


def _author(m: Message, customer_name: str, names: dict[int, str]) -> str:
    if m.author_type == "customer":
        return customer_name
    if m.author_type == "agent":
        return names.get(m.author_id or 0, "agent")
    return m.author_type


async def build_context_package(
    session: AsyncSession,
    conversation: Conversation,
    *,
    now: datetime | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Everything the receiver needs first, as JSON (stored on the handoff row)."""
    packages = await build_context_packages(session, [conversation], now=now, limit=limit)
    return packages[conversation.id]  # type: ignore[index]
