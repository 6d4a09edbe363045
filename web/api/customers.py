"""``/api/v1/customers``: search, read, merge, timeline."""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter, HTTPException, Query

from crm_core import identity
from crm_core.normalize import InvalidContact
from heliograph.bounds import UtcDatetime
from inbox.timeline import customer_timeline
from web.api.schemas import (
    ContactIn,
    ContactOut,
    CustomerDetail,
    CustomerOut,
    MergeIn,
    TimelineOut,
    TimelinePage,
)
from web.api.types import Id
from web.deps import AgentDep, LeadDep, MemberDep, ReadSessionDep, SessionDep

router = APIRouter(prefix="/customers", tags=["customers"])


@router.get("", response_model=list[CustomerOut], summary="Search by name, email, phone or id")
async def search(
    session: ReadSessionDep,
    _: MemberDep,
    q: str = Query(min_length=1, max_length=255, description="name prefix, email, phone, id"),
    limit: int = Query(20, ge=1, le=100),
) -> list[object]:
    return await identity.search_customers(session, q, limit)  # type: ignore[return-value]


@router.get("/{customer_id}", response_model=CustomerDetail)
async def get(customer_id: Id, session: ReadSessionDep, _: MemberDep) -> CustomerDetail:
    customer = await identity.get_customer(session, customer_id)
    return CustomerDetail.model_validate(
        {
            **CustomerOut.model_validate(customer).model_dump(),
            "identities": await identity.identities_of(session, customer.id),  # type: ignore[arg-type]
            "contacts": await identity.contacts_of(session, customer.id),  # type: ignore[arg-type]
        }
    )


@router.post("/{customer_id}/merge", response_model=CustomerOut, summary="Fold another in")
async def merge(customer_id: Id, body: MergeIn, session: SessionDep, lead: LeadDep) -> object:
    target = await identity.merge_customers(
        session, customer_id, body.source_id, actor=f"member:{lead.id}"
    )
    await session.commit()
    return target


@router.post(
    "/{customer_id}/contacts",
    response_model=ContactOut,
    status_code=201,
    summary="Store an email or phone on the profile",
)
async def add_contact(customer_id: Id, body: ContactIn, session: SessionDep, _: AgentDep) -> object:
    """A later message from this address or number (any channel) joins this customer."""
    try:
        contact = await identity.add_contact(session, customer_id, body.kind, body.value)
    except InvalidContact as exc:
        raise HTTPException(422, str(exc)) from exc
    except identity.ContactTaken as exc:
        raise HTTPException(409, str(exc)) from exc
    await session.commit()
    return contact


@router.get("/{customer_id}/timeline", response_model=TimelinePage)
async def timeline(
    customer_id: Id,
    session: ReadSessionDep,
    _: MemberDep,
    before: UtcDatetime | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> TimelinePage:
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)  # naive times are UTC, as in the rest of the API
    customer = await identity.get_customer(session, customer_id)
    entries = await customer_timeline(session, customer.id, before, limit)  # type: ignore[arg-type]
    return TimelinePage(
        entries=[TimelineOut(**e.__dict__) for e in entries],
        next_before=entries[-1].at if len(entries) == limit else None,
    )
