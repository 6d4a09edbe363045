"""GDPR: export everything held about a customer as one JSON document, and erase them.

crm_core holds the profile, identities, contacts and the CRM tables; other packages
hold the rest (conversations and messages in the inbox, assignments in routing). They
take part through ``export_hooks`` and ``erase_hooks`` (as merges do through
``crm_core.identity.merge_hooks``), so crm_core never imports upward.

Erasure keeps the customer row (ids elsewhere still point at it) but blanks it, deletes
identities, contact points, activity events, enrollments, journey changes, scores,
interventions and the queued jobs whose payload names the customer, lets the hooks redact
what they hold, and writes one audit row that says
who erased which id and how many rows went, with no personal data in it. A customer
merged into this one is erased with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import get_customer
from crm_core.models import (
    ActivityEvent,
    ContactPoint,
    Customer,
    CustomerScore,
    Enrollment,
    Identity,
    Intervention,
    JourneyChange,
)
from heliograph.db import utcnow
from heliograph.models import AuditEvent, Job

ExportHook = Callable[[AsyncSession, list[int]], Awaitable[dict[str, Any]]]
EraseHook = Callable[[AsyncSession, list[int]], Awaitable[dict[str, int]]]
export_hooks: list[ExportHook] = []  # customer ids -> {"section": [...]} for the document
erase_hooks: list[EraseHook] = []  # customer ids -> {"table": rows changed}

# Children first: journey changes point at activity events.
_CRM_TABLES: tuple[type[SQLModel], ...] = (
    JourneyChange,
    Intervention,
    CustomerScore,
    ActivityEvent,
    Enrollment,
    Identity,
    ContactPoint,
)


class AlreadyErased(ValueError):
    pass


def plain(row: SQLModel, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    data = row.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in drop}


async def merged_ids(session: AsyncSession, customer_id: int) -> list[int]:
    """The customer and every profile merged into it (at any depth)."""
    ids, frontier = [customer_id], [customer_id]
    while frontier:
        rows = await session.execute(
            select(Customer.id).where(Customer.merged_into_id.in_(frontier))  # type: ignore[call-overload, union-attr]
        )
        frontier = [r for r in rows.scalars() if r not in ids]
        ids.extend(frontier)
    return ids


async def _all(session: AsyncSession, model: Any, ids: list[int], order: Any) -> list[Any]:
    rows = await session.execute(select(model).where(model.customer_id.in_(ids)).order_by(order))
    return list(rows.scalars().all())


async def export_customer(session: AsyncSession, customer_id: int) -> dict[str, Any]:
    customer = await get_customer(session, customer_id)
    ids = await merged_ids(session, customer.id)  # type: ignore[arg-type]
    merged = [await session.get(Customer, i) for i in ids[1:]]
    doc: dict[str, Any] = {
        "format": "heliograph.customer-export/1",
        "exported_at": utcnow().isoformat(),
        "customer": plain(customer, ("search_name",)),
        "merged_profiles": [plain(m, ("search_name",)) for m in merged if m is not None],
        "identities": [plain(r) for r in await _all(session, Identity, ids, Identity.id)],
        "contact_points": [
            plain(r) for r in await _all(session, ContactPoint, ids, ContactPoint.id)
        ],
        "enrollments": [plain(r) for r in await _all(session, Enrollment, ids, Enrollment.id)],
        "activity_events": [
            plain(r) for r in await _all(session, ActivityEvent, ids, ActivityEvent.occurred_at)
        ],
        "journey": [plain(r) for r in await _all(session, JourneyChange, ids, JourneyChange.at)],
        "scores": [
            plain(r) for r in await _all(session, CustomerScore, ids, CustomerScore.customer_id)
        ],
        "interventions": [
            plain(r) for r in await _all(session, Intervention, ids, Intervention.id)
        ],
    }
    audit = await session.execute(
        select(AuditEvent)
        .where(AuditEvent.subject_type == "customer", AuditEvent.subject_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(AuditEvent.id)
    )
    doc["audit"] = [plain(a) for a in audit.scalars()]
    for hook in export_hooks:
        doc.update(await hook(session, ids))
    return doc


_BLANK = {
    "display_name": "",
    "search_name": "",
    "language": None,
    "timezone": None,
    "country": None,
    "journey_stage": "discovery",
    "lifetime_value": 0,
    "vip": False,
    "attributes": {},
    "interests": [],
    "preferred_channel": None,
    "quiet_hours_start": None,
    "quiet_hours_end": None,
    "last_seen_at": None,
}


async def erase_customer(session: AsyncSession, customer_id: int, actor: str) -> dict[str, int]:
    """Erase a customer (and the profiles merged into it); returns rows changed per table."""
    customer = await get_customer(session, customer_id)
    if customer.erased_at is not None:
        raise AlreadyErased(f"customer {customer.id} was erased already")
    ids = await merged_ids(session, customer.id)  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    for hook in erase_hooks:
        for table, n in (await hook(session, ids)).items():
            counts[table] = counts.get(table, 0) + n
    for model in _CRM_TABLES:
        result = await session.execute(delete(model).where(model.customer_id.in_(ids)))  # type: ignore[attr-defined]
        counts[model.__tablename__] = int(result.rowcount)  # type: ignore[attr-defined]
    # Queued work that names them (e.g. an intervention.opened card with their name).
    jobs = await session.execute(
        delete(Job).where(Job.payload["customer_id"].as_integer().in_(ids))  # type: ignore[index]
    )
    counts["job"] = int(jobs.rowcount)  # type: ignore[attr-defined]
    now = utcnow()
    await session.execute(
        update(Customer).where(Customer.id.in_(ids)).values(**_BLANK, erased_at=now, updated_at=now)  # type: ignore[union-attr]
    )
    session.add(
        AuditEvent(
            actor=actor,
            action="customer.erase",
            subject_type="customer",
            subject_id=customer.id,  # type: ignore[arg-type]
            details={"customer_ids": ids, "rows": counts},
        )
    )
    await session.flush()
    session.expire_all()  # the blanked rows are read fresh from here on
    return counts
