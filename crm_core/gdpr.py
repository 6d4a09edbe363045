"""GDPR: export everything held about a customer as one JSON document, and erase them.

crm_core holds the profile, identities, contact points and the CRM tables; other
packages hold the rest (conversations, messages and the translation cache in the inbox,
handoffs, assignments in routing). They take part through ``export_hooks`` and
``erase_hooks`` (as merges do through ``crm_core.identity.merge_hooks``), so crm_core
never imports upward. ``crm_core.personal_data`` lists every table and file that can
hold personal data and what erasure does to each; the export holds all of it.

Erasure keeps the customer row (ids elsewhere still point at it) but blanks it, deletes
identities, contact points, activity events, enrollments, journey changes, scores and
interventions, lets the hooks redact what they hold, deletes every job whose payload
names one of the customer's ids (done ones too: a finished team notice still carries the
words it sent), cuts stored idempotent answers to their ids, replaces mentions of the
customer in free text no key ties to them (``crm_core.gdpr_mentions``), and writes one
audit row that says who erased which id and how many rows went, with no personal data in
it. A customer merged into this one is erased with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, delete, or_, select, update
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import gdpr_mentions
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
from heliograph.models import AuditEvent, IdempotencyRecord, Job
from heliograph.texts import Text

ExportHook = Callable[[AsyncSession, list[int]], Awaitable[dict[str, Any]]]
EraseHook = Callable[[AsyncSession, list[int]], Awaitable[dict[str, int]]]
export_hooks: list[ExportHook] = []  # customer ids -> {"section": [...]} for the document
erase_hooks: list[EraseHook] = []  # customer ids -> {"table": rows changed}
# A job payload key naming a row, and the ids (a list or a SELECT of one column) to match.
JobRefs = dict[str, "list[int] | Select[Any]"]

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


def _jobs_naming(refs: JobRefs) -> Any:
    conditions = [
        Job.payload[key].as_integer().in_(ids)  # type: ignore[index]
        for key, ids in refs.items()
        if not isinstance(ids, list) or ids
    ]
    return or_(*conditions) if conditions else None


async def jobs_naming(session: AsyncSession, refs: JobRefs) -> list[Job]:
    """Jobs (any status) whose payload names one of these ids, e.g. ``{"message_id": [...]}``."""
    where = _jobs_naming(refs)
    if where is None:
        return []
    return list((await session.execute(select(Job).where(where).order_by(Job.id))).scalars())  # type: ignore[arg-type]


async def drop_jobs(session: AsyncSession, refs: JobRefs) -> int:
    """Delete the jobs ``jobs_naming`` finds: pending work about an erased customer is moot,
    and a finished one still carries what it said (a team notice with their words)."""
    where = _jobs_naming(refs)
    if where is None:
        return 0
    return int((await session.execute(delete(Job).where(where))).rowcount)  # type: ignore[attr-defined]


async def _all(session: AsyncSession, model: Any, ids: list[int], order: Any) -> list[Any]:
    rows = await session.execute(select(model).where(model.customer_id.in_(ids)).order_by(order))
    return list(rows.scalars().all())


def _interventions_of(ids: list[int]) -> Select[Any]:
    return select(Intervention.id).where(Intervention.customer_id.in_(ids))  # type: ignore[call-overload, attr-defined]


async def _crm_sections(session: AsyncSession, ids: list[int]) -> dict[str, Any]:
    return {
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
        "idempotency_records": [
            plain(r) for r in await _all(session, IdempotencyRecord, ids, IdempotencyRecord.id)
        ],
    }


async def export_customer(session: AsyncSession, customer_id: int) -> dict[str, Any]:
    customer = await get_customer(session, customer_id)
    ids = await merged_ids(session, customer.id)  # type: ignore[arg-type]
    merged = [await session.get(Customer, i) for i in ids[1:]]
    doc: dict[str, Any] = {
        "format": "heliograph.customer-export/1",
        "exported_at": utcnow().isoformat(),
        "customer": plain(customer, ("search_name",)),
        "merged_profiles": [plain(m, ("search_name",)) for m in merged if m is not None],
        **await _crm_sections(session, ids),
    }
    audit = await session.execute(
        select(AuditEvent)
        .where(AuditEvent.subject_type == "customer", AuditEvent.subject_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(AuditEvent.id)
    )
    doc["audit"] = [plain(a) for a in audit.scalars()]
    refs: JobRefs = {"customer_id": ids, "intervention_id": _interventions_of(ids)}
    jobs = await jobs_naming(session, refs)
    for hook in export_hooks:
        section = await hook(session, ids)
        jobs += section.pop("jobs", [])
        doc.update(section)
    unique = {j.id: j for j in jobs}
    doc["jobs"] = [plain(j, ("locked_by",)) for _, j in sorted(unique.items())]
    terms = await gdpr_mentions.search_terms(session, ids)
    doc["mentions"] = await gdpr_mentions.find_mentions(session, terms)
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


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for table, n in more.items():
        counts[table] = counts.get(table, 0) + n


async def _cut_idempotent_answers(session: AsyncSession, ids: list[int]) -> int:
    """A retried request still gets an answer and does nothing twice; the answer keeps
    only its ids (it repeated the reply's words)."""
    rows = await _all(session, IdempotencyRecord, ids, IdempotencyRecord.id)
    for row in rows:
        answer = row.response if isinstance(row.response, dict) else {}
        kept = {k: v for k, v in answer.items() if k == "id" or k.endswith("_id")}
        row.response = {**{k: v for k, v in kept.items() if isinstance(v, int)}, "erased": True}
    return len(rows)


async def erase_customer(session: AsyncSession, customer_id: int, actor: str) -> dict[str, int]:
    """Erase a customer (and the profiles merged into it); returns rows changed per table."""
    customer = await get_customer(session, customer_id)
    if customer.erased_at is not None:
        raise AlreadyErased(Text("customer %(id)s was erased already", id=customer.id))
    ids = await merged_ids(session, customer.id)  # type: ignore[arg-type]
    terms = await gdpr_mentions.search_terms(session, ids)  # before the profile goes
    counts: dict[str, int] = {}
    for hook in erase_hooks:
        _add(counts, await hook(session, ids))
    refs: JobRefs = {"customer_id": ids, "intervention_id": _interventions_of(ids)}
    _add(counts, {"job": await drop_jobs(session, refs)})
    for model in _CRM_TABLES:
        result = await session.execute(delete(model).where(model.customer_id.in_(ids)))  # type: ignore[attr-defined]
        counts[model.__tablename__] = int(result.rowcount)  # type: ignore[attr-defined]
    counts["idempotency_record"] = await _cut_idempotent_answers(session, ids)
    now = utcnow()
    await session.execute(
        update(Customer).where(Customer.id.in_(ids)).values(**_BLANK, erased_at=now, updated_at=now)  # type: ignore[union-attr]
    )
    _add(counts, await gdpr_mentions.scrub_mentions(session, terms))
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
