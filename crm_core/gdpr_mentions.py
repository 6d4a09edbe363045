"""Mentions of a customer in free text that no key ties to them.

Job payloads, the audit log's details and the bot's answers in the team's Telegram chats
(the ``mentions`` columns of ``crm_core.personal_data``) can name a customer without
holding their id: a team notice carries "💬 Ana Silva: ...", an alert the suggested
message. Erasure takes the customer's names, email addresses, phone numbers and channel
ids as search terms, finds the rows whose text holds one of them (a ``LIKE`` pre-filter
in SQL, then a whole-word match here, so that "Ana" never hits "Banana") and replaces
each occurrence with ``[erased]``; the export lists the same hits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import ContactPoint, Customer, Identity
from crm_core.personal_data import mention_columns

MARK = "[erased]"
MIN_NAME = 3  # a name part shorter than this ("Li") would hit unrelated words
MIN_ID = 5  # a channel id shorter than this would hit unrelated numbers


@dataclass
class Terms:
    """What identifies a customer in free text. ``loose`` (full names, contacts, channel
    ids) match in any case; ``exact`` (one part of a name: "Will", "Grace") only as
    written, so that a lower-case word in a job's payload ("will", a ``kind`` of "grace")
    is never taken for them."""

    loose: list[str] = field(default_factory=list)
    exact: list[str] = field(default_factory=list)

    def every(self) -> list[str]:
        return self.loose + self.exact

    def pattern(self) -> re.Pattern[str] | None:
        if not self.loose and not self.exact:
            return None
        longest = sorted(self.every(), key=len, reverse=True)  # "Ana Silva" before "Ana"
        loose = {t.casefold() for t in self.loose}
        alternatives = "|".join(
            f"(?i:{re.escape(t)})" if t.casefold() in loose else re.escape(t) for t in longest
        )
        return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def _add_name(terms: Terms, name: str | None) -> None:
    name = " ".join((name or "").split())
    if not name:
        return
    terms.loose.append(name)
    parts = [p.strip(".,;:()'\"") for p in name.split(" ")]
    if len(parts) > 1:
        terms.exact += [p for p in parts if len(p) >= MIN_NAME]


async def search_terms(session: AsyncSession, customer_ids: list[int]) -> Terms:
    """What identifies these customers in free text."""
    names = await session.execute(
        select(Customer.display_name).where(Customer.id.in_(customer_ids))  # type: ignore[union-attr]
    )
    idents = await session.execute(
        select(Identity.external_id, Identity.display_name).where(
            Identity.customer_id.in_(customer_ids)  # type: ignore[attr-defined]
        )
    )
    contacts = await session.execute(
        select(ContactPoint.kind, ContactPoint.value).where(
            ContactPoint.customer_id.in_(customer_ids)  # type: ignore[attr-defined]
        )
    )
    terms = Terms()
    for (name,) in names.all():
        _add_name(terms, name)
    for external_id, display_name in idents.all():
        _add_name(terms, display_name)
        if len(external_id) >= MIN_ID:
            terms.loose.append(external_id)
    for kind, value in contacts.all():
        terms.loose.append(value)
        if kind == "phone":
            terms.loose.append(value.lstrip("+"))  # "447700900123" as well as "+447700900123"
    terms.loose = list(dict.fromkeys(terms.loose))
    terms.exact = list(dict.fromkeys(terms.exact))
    return terms


def scrubbed(value: Any, pattern: re.Pattern[str]) -> Any:
    """``value`` (text or JSON) with every match replaced by MARK."""
    if isinstance(value, str):
        return pattern.sub(MARK, value)
    if isinstance(value, list):
        return [scrubbed(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: scrubbed(v, pattern) for k, v in value.items()}
    return value


def _likes(terms: list[str]) -> list[str]:
    """The lower-cased forms to pre-filter on: as written, and as JSON escapes them."""
    forms = {t.lower() for t in terms}
    forms |= {json.dumps(t.lower())[1:-1] for t in terms}
    return sorted(forms)


async def _hits(
    session: AsyncSession, table: str, column: str, terms: Terms, pattern: re.Pattern[str]
) -> list[tuple[dict[str, Any], Any]]:
    found = SQLModel.metadata.tables[table]
    col = found.c[column]
    text = func.lower(cast(col, Text))
    keys = list(found.primary_key.columns)
    rows = await session.execute(
        select(*keys, col).where(
            or_(*(text.contains(f, autoescape=True) for f in _likes(terms.every())))
        )
    )
    hits = []
    for row in rows.all():
        value = row[-1]
        if scrubbed(value, pattern) != value:  # a whole-word match, not a substring
            hits.append(({k.name: row[i] for i, k in enumerate(keys)}, value))
    return hits


async def find_mentions(session: AsyncSession, terms: Terms) -> list[dict[str, Any]]:
    """Every ``mentions`` column value that names the customer (for the export)."""
    pattern = terms.pattern()
    if pattern is None:
        return []
    out = []
    for table, column in mention_columns():
        for key, value in await _hits(session, table, column, terms, pattern):
            out.append({"table": table, "column": column, "key": key, "value": value})
    return out


async def scrub_mentions(session: AsyncSession, terms: Terms) -> dict[str, int]:
    """Replace the customer's names, contacts and ids in every ``mentions`` column."""
    pattern = terms.pattern()
    counts: dict[str, int] = {}
    if pattern is None:
        return counts
    for table, column in mention_columns():
        found = SQLModel.metadata.tables[table]
        for key, value in await _hits(session, table, column, terms, pattern):
            where = [found.c[k] == v for k, v in key.items()]
            await session.execute(
                update(found).where(*where).values({column: scrubbed(value, pattern)})
            )
            counts[f"{table}.mentions"] = counts.get(f"{table}.mentions", 0) + 1
    return counts
