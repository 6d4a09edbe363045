"""Find (or create) the customers behind a batch of events in a few statements.

An event names its customer by id, or by email and/or phone (contact points, the same
unique keys ``crm_core.identity.resolve_senders`` uses). Unknown contacts become new
customers, one per distinct email (else phone) in the batch. The race with another
writer creating the same contact is settled by the unique key (``resolve_senders``
settles it by a retry): contact points are inserted with ON CONFLICT DO NOTHING, and a
new customer whose email (or phone) someone else took in the meantime is dropped in
favour of theirs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import ContactPoint, Customer
from crm_core.normalize import search_key
from heliograph.bulk import among, chunks, insert_ignore
from heliograph.db import utcnow


@dataclass(frozen=True)
class Who:
    """A customer as an event names them (contacts already normalised)."""

    id: int | None = None
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    timezone: str | None = None
    language: str | None = None
    country: str | None = None

    @property
    def key(self) -> tuple[str, str] | None:
        if self.email:
            return ("email", self.email)
        if self.phone:
            return ("phone", self.phone)
        return None


@dataclass(frozen=True)
class _Live:
    id: int
    erased: bool


async def _follow_merges(session: AsyncSession, ids: set[int]) -> dict[int, _Live | None]:
    """id -> the surviving customer (None when there is no such customer). Plain columns,
    not ORM objects: a batch names up to a thousand customers."""
    rows: dict[int, tuple[int | None, bool]] = {}
    pending = set(ids)
    for _ in range(10):
        if not pending:
            break
        for part in chunks(sorted(pending)):
            result = await session.execute(
                select(Customer.id, Customer.merged_into_id, Customer.erased_at).where(  # type: ignore[call-overload]
                    among(session, Customer.id, part)
                )
            )
            rows.update({cid: (merged, erased is not None) for cid, merged, erased in result.all()})
        pending = {m for cid in pending if (m := rows.get(cid, (None, False))[0]) is not None}
        pending -= set(rows)
    found: dict[int, _Live | None] = {}
    for cid in ids:
        target: int | None = cid
        for _ in range(10):
            if target is None or target not in rows or rows[target][0] is None:
                break
            target = rows[target][0]
        found[cid] = _Live(target, rows[target][1]) if target in rows else None
    return found


async def _by_contact(
    session: AsyncSession,
    contacts: set[tuple[str, str]],
    merged: dict[int, tuple[int | None, bool]] | None = None,
) -> dict[tuple[str, str], int]:
    """The owner of each contact that has one. ``merged``, if given, is filled with each
    owner's ``merged_into_id`` and whether it is erased (read in the same statement)."""
    owners: dict[tuple[str, str], int] = {}
    cp, c = ContactPoint, Customer
    for kind in ("email", "phone"):
        values = sorted(v for k, v in contacts if k == kind)
        for part in chunks(values):
            rows = await session.execute(
                select(cp.value, cp.customer_id, c.merged_into_id, c.erased_at)  # type: ignore[call-overload]
                .join(c, c.id == cp.customer_id)
                .where(cp.kind == kind, among(session, cp.value, part))
            )
            for value, cid, merged_into, erased in rows.all():
                owners[(kind, value)] = cid
                if merged is not None:
                    merged[cid] = (merged_into, erased is not None)
    return owners


def _new_customer_row(who: Who, now: Any) -> dict[str, Any]:
    name = (who.name or "")[:200]
    return {
        "display_name": name,
        "search_name": search_key(name),
        "language": who.language,
        "timezone": who.timezone,
        "country": who.country,
        "journey_stage": "discovery",
        "lifetime_value": 0,
        "vip": False,
        "attributes": {},
        "interests": [],
        "created_at": now,
        "updated_at": now,
    }


async def _create(
    session: AsyncSession, groups: dict[tuple[str, str], list[Who]]
) -> tuple[dict[tuple[str, str], int], set[int]]:
    """The customer of each group's key, and which of them are new (made here)."""
    now = utcnow()
    keys = list(groups)
    table = Customer.__table__  # type: ignore[attr-defined]
    # Which new id is whose: SQLite does not promise RETURNING rows in VALUES order, so
    # each row carries a one-off marker in search_name, read back and then replaced.
    batch_tag = uuid.uuid4().hex
    rows = []
    for n, key in enumerate(keys):
        row = _new_customer_row(groups[key][0], now)
        rows.append({**row, "search_name": f"\x01{batch_tag}:{n}"})
    owner: dict[tuple[str, str], int] = {}
    names: list[dict[str, Any]] = []
    for part in chunks(rows, 500):
        stmt = insert(table).returning(table.c.id, table.c.search_name)
        for cid, marker in (await session.execute(stmt, list(part))).all():
            key = keys[int(marker.rsplit(":", 1)[1])]
            owner[key] = cid
            names.append({"id": cid, "search_name": search_key(groups[key][0].name or "")})
    await session.execute(update(Customer), names)
    contact_rows: list[dict[str, Any]] = []
    for key, members in groups.items():
        seen = {key}
        contact_rows.append({"customer_id": owner[key], "kind": key[0], "value": key[1]})
        for who in members:
            for extra in (("email", who.email), ("phone", who.phone)):
                if extra[1] and extra not in seen:
                    seen.add(extra)  # type: ignore[arg-type]
                    contact_rows.append(
                        {"customer_id": owner[key], "kind": extra[0], "value": extra[1]}
                    )
    for row in contact_rows:
        row["created_at"] = now
    inserted: set[tuple[str, str]] = set()
    for part in chunks(contact_rows, 1000):
        got = await insert_ignore(
            session,
            ContactPoint.__table__,
            list(part),
            ["kind", "value"],
            ["kind", "value"],  # type: ignore[attr-defined]
        )
        inserted.update((k, v) for k, v in got)
    lost = [key for key in keys if key not in inserted]
    new_ids = {owner[key] for key in keys if key in inserted}
    if lost:
        # Someone else owns this email/phone (another writer, or an earlier group in this
        # batch as its second contact): theirs stands, and our empty customer goes.
        holders = await _by_contact(session, set(lost))
        orphans = [owner[key] for key in lost]
        for key in lost:
            owner[key] = holders[key]
        await session.execute(delete(ContactPoint).where(ContactPoint.customer_id.in_(orphans)))  # type: ignore[attr-defined]
        await session.execute(delete(Customer).where(Customer.id.in_(orphans)))  # type: ignore[union-attr]
    return owner, new_ids


async def resolve_many(
    session: AsyncSession, people: list[Who]
) -> tuple[list[int | None], list[str | None], set[int]]:
    """For each entry, the customer id (following merges) or why there is none; and the
    ids of the customers created here (they have no history yet)."""
    ids = {w.id for w in people if w.id is not None}
    by_id = await _follow_merges(session, ids) if ids else {}
    contacts: set[tuple[str, str]] = set()
    for w in people:
        if w.id is None:
            contacts.update(c for c in (("email", w.email), ("phone", w.phone)) if c[1])  # type: ignore[misc]
    state: dict[int, tuple[int | None, bool]] = {}
    owners = await _by_contact(session, contacts, state) if contacts else {}
    groups: dict[tuple[str, str], list[Who]] = {}
    for w in people:
        if w.id is None and w.key is not None:
            known = owners.get(w.key) or (w.phone and owners.get(("phone", w.phone)))
            if not known:
                groups.setdefault(w.key, []).append(w)
    created, new_ids = await _create(session, groups) if groups else ({}, set())
    # Owners as read with their contacts stand unless merged away (rare): only those are
    # followed; customers made here are neither merged nor erased.
    live: dict[int, _Live | None] = {
        cid: _Live(cid, erased) for cid, (into, erased) in state.items() if into is None
    }
    live.update({cid: _Live(cid, False) for cid in new_ids})
    unsure = {cid for cid in {*owners.values(), *created.values()} if cid not in live}
    if unsure:
        live.update(await _follow_merges(session, unsure))

    result: list[int | None] = []
    errors: list[str | None] = []
    for w in people:
        customer: _Live | None
        if w.id is not None:
            customer = by_id.get(w.id)
            missing = f"customer {w.id} does not exist"
        else:
            cid = owners.get(w.key) if w.key else None  # type: ignore[arg-type]
            if cid is None and w.phone:
                cid = owners.get(("phone", w.phone))
            if cid is None and w.key is not None:
                cid = created.get(w.key)
            customer = live.get(cid) if cid is not None else None
            missing = "the customer needs an id, an email or a phone"
        if customer is None:
            result.append(None)
            errors.append(missing)
        elif customer.erased:
            result.append(None)
            errors.append(f"customer {customer.id} was erased")
        else:
            result.append(customer.id)
            errors.append(None)
    return result, errors, new_ids
