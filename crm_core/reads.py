"""crm_core's tables as other packages read them: customers, their contact points, journey
and open interventions, by lists of ids (one query each, whatever the number)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import ContactPoint, Customer, Identity, Intervention, JourneyChange


def label(customer_id: int, display_name: str | None) -> str:
    """How a customer is named to the team: the display name, else ``customer <id>``."""
    return display_name or f"customer {customer_id}"


async def customers_by_id(
    session: AsyncSession, customer_ids: Iterable[int]
) -> dict[int, Customer]:
    ids = set(customer_ids)
    if not ids:
        return {}
    rows = await session.execute(select(Customer).where(Customer.id.in_(ids)))  # type: ignore[union-attr]
    return {c.id: c for c in rows.scalars().all()}  # type: ignore[misc]


async def customer_names(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, str]:
    """``{id: label}`` of the customers that exist."""
    ids = set(customer_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Customer.id, Customer.display_name).where(Customer.id.in_(ids))  # type: ignore[union-attr, call-overload]
    )
    return {cid: label(cid, name) for cid, name in rows.all()}


async def contacts_by_customer(
    session: AsyncSession, customer_ids: Iterable[int]
) -> dict[int, list[ContactPoint]]:
    """Each customer's contact points, in the order they were added."""
    found: dict[int, list[ContactPoint]] = defaultdict(list)
    ids = set(customer_ids)
    if ids:
        rows = await session.execute(
            select(ContactPoint)
            .where(ContactPoint.customer_id.in_(ids))  # type: ignore[attr-defined]
            .order_by(ContactPoint.id)  # type: ignore[arg-type]
        )
        for point in rows.scalars().all():
            found[point.customer_id].append(point)
    return found


async def journeys_by_customer(
    session: AsyncSession, customer_ids: Iterable[int]
) -> dict[int, list[JourneyChange]]:
    """Each customer's journey changes, oldest first (as ``journey.journey_of``)."""
    found: dict[int, list[JourneyChange]] = defaultdict(list)
    ids = set(customer_ids)
    if ids:
        rows = await session.execute(
            select(JourneyChange)
            .where(JourneyChange.customer_id.in_(ids))  # type: ignore[attr-defined]
            .order_by(JourneyChange.at, JourneyChange.id)  # type: ignore[arg-type]
        )
        for change in rows.scalars().all():
            found[change.customer_id].append(change)
    return found


async def open_interventions(
    session: AsyncSession, customer_ids: Iterable[int], newest_first: bool = False
) -> dict[int, list[Intervention]]:
    """Each customer's open interventions, oldest (or newest) first."""
    found: dict[int, list[Intervention]] = defaultdict(list)
    ids = list(dict.fromkeys(customer_ids))
    if ids:
        order = Intervention.id.desc() if newest_first else Intervention.id  # type: ignore[union-attr]
        rows = await session.execute(
            select(Intervention)
            .where(Intervention.state == "open", Intervention.customer_id.in_(ids))  # type: ignore[attr-defined, arg-type]
            .order_by(order)
        )
        for intervention in rows.scalars().all():
            found[intervention.customer_id].append(intervention)
    return found


async def most_valuable_at_risk(session: AsyncSession, limit: int) -> list[Customer]:
    """Customers with open interventions, the highest lifetime value first."""
    risky = (
        select(Intervention.customer_id)  # type: ignore[call-overload]
        .where(Intervention.state == "open")
        .group_by(Intervention.customer_id)
        .subquery()
    )
    rows = await session.execute(
        select(Customer)
        .where(Customer.id.in_(select(risky.c.customer_id)))  # type: ignore[union-attr]
        .order_by(Customer.lifetime_value.desc(), Customer.id)  # type: ignore[attr-defined, arg-type]
        .limit(limit)
    )
    return list(rows.scalars().all())


async def identities_by_id(
    session: AsyncSession, identity_ids: Iterable[int | None]
) -> dict[int, Identity]:
    """``{id: identity}`` of the identities that exist (None ids are skipped)."""
    ids = {i for i in identity_ids if i is not None}
    if not ids:
        return {}
    rows = await session.execute(select(Identity).where(Identity.id.in_(ids)))  # type: ignore[union-attr]
    return {i.id: i for i in rows.scalars().all()}  # type: ignore[misc]


def identity_id(channel: str, external_id: str) -> Any:
    """The id of the identity ``(channel, external_id)`` as a scalar subquery (NULL: none),
    for another owner's statement to compare its identity column with."""
    return (
        select(Identity.id)  # type: ignore[call-overload]
        .where(Identity.channel == channel, Identity.external_id == external_id)
        .scalar_subquery()
    )


def with_customer(stmt: Select[Any], customer_id: Any) -> Select[Any]:
    """``stmt`` with the customer whose id is the column ``customer_id`` outer-joined and
    their ``id, vip, language, timezone, merged_into_id`` added to its columns (NULLs: no
    such customer): another owner's statement reads the profile without a second query."""
    c = Customer
    return stmt.add_columns(c.id, c.vip, c.language, c.timezone, c.merged_into_id).outerjoin(  # type: ignore[arg-type]
        c, c.id == customer_id
    )
