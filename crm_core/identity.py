"""Resolve a sender to one customer, race-safely; merge customers; search them.

Two first messages from one sender can arrive at the same moment (a provider retry
racing the original, or two workers). Both look up the identity, find nothing, and
try to insert it: the unique key ``(channel, external_id)`` lets exactly one win. The
loser's savepoint rolls back and it looks again, now finding the winner's row: one
customer, never two (Chatwoot's duplicate-contact bug came from a non-unique key).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import func, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import ContactPoint, Customer, Identity
from crm_core.normalize import InvalidContact, normalize_email, normalize_phone, search_key
from heliograph.db import is_unique_violation, utcnow
from heliograph.models import AuditEvent

MergeHook = Callable[[AsyncSession, int, int], Awaitable[dict[str, int]]]
merge_hooks: list[MergeHook] = []  # other packages move their rows (conversations, ...) here

_RESOLVE_TRIES = 5


class CustomerNotFound(LookupError):
    pass


class MergeError(ValueError):
    pass


@dataclass
class SenderProfile:
    channel: str
    external_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    language: str | None = None
    timezone: str | None = None


@dataclass
class Resolved:
    customer: Customer
    identity: Identity
    created: bool


def _contacts(sender: SenderProfile) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if sender.email:
        try:
            found.append(("email", normalize_email(sender.email)))
        except InvalidContact:
            pass  # a bad optional hint is dropped, not fatal to the message
    if sender.phone:
        try:
            found.append(("phone", normalize_phone(sender.phone)))
        except InvalidContact:
            pass
    return found


async def _find_identity(session: AsyncSession, channel: str, external_id: str) -> Identity | None:
    result = await session.execute(
        select(Identity).where(Identity.channel == channel, Identity.external_id == external_id)
    )
    return result.scalar_one_or_none()


async def _live_customer(session: AsyncSession, customer_id: int) -> Customer:
    """Follow ``merged_into_id`` so an old id still finds the surviving profile."""
    for _ in range(10):
        customer = await session.get(Customer, customer_id)
        if customer is None:
            raise CustomerNotFound(f"customer {customer_id} does not exist")
        if customer.merged_into_id is None:
            return customer
        customer_id = customer.merged_into_id
    raise CustomerNotFound(f"customer {customer_id}: merge chain too long")


async def _contact_owner(session: AsyncSession, kind: str, value: str) -> int | None:
    """The customer id an email or phone (already normalised) belongs to, if any."""
    result = await session.execute(
        select(ContactPoint.customer_id).where(
            ContactPoint.kind == kind, ContactPoint.value == value
        )
    )
    return result.scalar_one_or_none()


async def _customer_by_contact(
    session: AsyncSession, contacts: list[tuple[str, str]]
) -> Customer | None:
    for kind, value in contacts:
        customer_id = await _contact_owner(session, kind, value)
        if customer_id is not None:
            return await _live_customer(session, customer_id)
    return None


def _fill_profile(customer: Customer, sender: SenderProfile) -> None:
    """Fill blanks from what the channel told us; never overwrite what an agent set."""
    if sender.name and not customer.display_name:
        customer.display_name = sender.name[:200]
        customer.search_name = search_key(sender.name)
    if sender.language and not customer.language:
        customer.language = sender.language[:16]
    if sender.timezone and not customer.timezone:
        customer.timezone = sender.timezone[:64]
    customer.last_seen_at = utcnow()


async def _add_contacts(
    session: AsyncSession, customer_id: int, contacts: list[tuple[str, str]]
) -> None:
    for kind, value in contacts:
        if await _contact_owner(session, kind, value) is not None:
            continue
        try:
            async with session.begin_nested():
                session.add(ContactPoint(customer_id=customer_id, kind=kind, value=value))
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise  # someone else took it in the meantime; theirs stands


async def resolve_customer(session: AsyncSession, sender: SenderProfile) -> Resolved:
    """Find or create the customer behind ``sender`` inside the caller's transaction."""
    contacts = _contacts(sender)
    for _ in range(_RESOLVE_TRIES):
        identity = await _find_identity(session, sender.channel, sender.external_id)
        if identity is not None:
            customer = await _live_customer(session, identity.customer_id)
            _fill_profile(customer, sender)
            identity.last_seen_at = utcnow()
            # They wrote to us, so the channel reaches them again (e.g. unblocked the bot).
            identity.unreachable_reason = None
            await _add_contacts(session, customer.id, contacts)  # type: ignore[arg-type]
            return Resolved(customer, identity, created=False)
        try:
            async with session.begin_nested():
                customer = await _customer_by_contact(session, contacts)
                created = customer is None
                if customer is None:
                    customer = Customer()
                    session.add(customer)
                _fill_profile(customer, sender)
                await session.flush()
                identity = Identity(
                    customer_id=customer.id,  # type: ignore[arg-type]
                    channel=sender.channel,
                    external_id=sender.external_id,
                    display_name=(sender.name[:200] if sender.name else None),
                    last_seen_at=utcnow(),
                )
                session.add(identity)
                await session.flush()
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            continue  # lost the race: the winner's identity is there now
        await _add_contacts(session, customer.id, contacts)  # type: ignore[arg-type]
        return Resolved(customer, identity, created=created)
    raise RuntimeError(f"could not resolve sender {sender.channel}:{sender.external_id}")


async def get_customer(session: AsyncSession, customer_id: int) -> Customer:
    return await _live_customer(session, customer_id)


async def identities_of(session: AsyncSession, customer_id: int) -> list[Identity]:
    rows = await session.execute(
        select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.id)
    )
    return list(rows.scalars().all())


async def contacts_of(session: AsyncSession, customer_id: int) -> list[ContactPoint]:
    rows = await session.execute(
        select(ContactPoint)
        .where(ContactPoint.customer_id == customer_id)
        .order_by(ContactPoint.id)
    )
    return list(rows.scalars().all())


_PHONEISH = re.compile(r"^[+\d][\d\s().-]{5,}$")


async def search_customers(session: AsyncSession, query: str, limit: int = 20) -> list[Customer]:
    """By email, phone, any channel's external id, or the start of the name. Indexed lookups."""
    q = query.strip()
    if not q:
        return []
    ids: list[int] = []
    contact_values: list[tuple[str, str]] = []
    if "@" in q:
        try:
            contact_values.append(("email", normalize_email(q)))
        except InvalidContact:
            pass
    if _PHONEISH.match(q):
        try:
            contact_values.append(("phone", normalize_phone(q if q.startswith("+") else "+" + q)))
        except InvalidContact:
            pass
    # One statement for every exact kind (contact points and any channel's id), each part
    # an index seek; the customers come with it.
    exact = [
        select(ContactPoint.customer_id).where(
            ContactPoint.kind == kind, ContactPoint.value == value
        )
        for kind, value in contact_values
    ]
    external = [q] + [v for _, v in contact_values]
    exact.append(select(Identity.customer_id).where(Identity.external_id.in_(external)))  # type: ignore[attr-defined]
    matched = (
        await session.execute(
            select(Customer).where(Customer.id.in_(union_all(*exact).scalar_subquery()))  # type: ignore[union-attr]
        )
    ).scalars()
    found = {c.id: c for c in matched}
    ids.extend(found)
    if not ids:
        # No exact email, phone or channel-id match: the query is (the start of) a name.
        key = search_key(q)
        rows = await session.execute(
            select(Customer.id)
            .where(
                Customer.search_name >= key,
                Customer.search_name < key + "\uffff",
                Customer.merged_into_id.is_(None),  # type: ignore[union-attr]
            )
            .order_by(Customer.search_name)
            .limit(limit)
        )
        ids.extend(rows.scalars().all())
    missing = set(ids) - set(found)
    if missing:
        rows = await session.execute(select(Customer).where(Customer.id.in_(missing)))  # type: ignore[union-attr]
        found.update({c.id: c for c in rows.scalars()})
    seen: dict[int, Customer] = {}
    for customer_id in ids:
        if len(seen) >= limit:
            break
        customer = found.get(customer_id)
        if customer is None or customer.merged_into_id is not None:
            customer = await _live_customer(session, customer_id)
        seen.setdefault(customer.id, customer)  # type: ignore[arg-type]
    return list(seen.values())


async def merge_customers(
    session: AsyncSession, target_id: int, source_id: int, actor: str
) -> Customer:
    """Fold ``source`` into ``target``: identities, contacts and (via hooks) conversations move."""
    if target_id == source_id:
        raise MergeError("a customer cannot be merged into itself")
    target = await _live_customer(session, target_id)
    source = await session.get(Customer, source_id)
    if source is None:
        raise CustomerNotFound(f"customer {source_id} does not exist")
    if source.merged_into_id is not None:
        raise MergeError(f"customer {source_id} was already merged into {source.merged_into_id}")
    if target.id == source.id:
        raise MergeError("a customer cannot be merged into itself")
    moved: dict[str, int] = {}
    for model in (Identity, ContactPoint):
        result = await session.execute(
            update(model).where(model.customer_id == source.id).values(customer_id=target.id)  # type: ignore[attr-defined]
        )
        moved[model.__tablename__] = int(result.rowcount)  # type: ignore[attr-defined, arg-type]
    for hook in merge_hooks:
        moved.update(await hook(session, source.id, target.id))  # type: ignore[arg-type]
    for field in ("language", "timezone", "country"):
        if getattr(target, field) is None and getattr(source, field) is not None:
            setattr(target, field, getattr(source, field))
    if not target.display_name and source.display_name:
        target.display_name, target.search_name = source.display_name, source.search_name
    target.lifetime_value = (target.lifetime_value or 0) + (source.lifetime_value or 0)
    target.vip = target.vip or source.vip
    target.updated_at = utcnow()
    source.merged_into_id = target.id
    source.search_name = ""
    session.add(
        AuditEvent(
            actor=actor,
            action="customer.merge",
            subject_type="customer",
            subject_id=target.id,  # type: ignore[arg-type]
            details={"source_id": source.id, "target_id": target.id, "moved": moved},
        )
    )
    await session.flush()
    return target


async def count_customers(session: AsyncSession) -> int:
    result = await session.execute(
        select(func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))  # type: ignore[union-attr]
    )
    return int(result.scalar_one())


async def mark_unreachable(
    session: AsyncSession, channel: str, external_id: str, reason: str
) -> bool:
    """The provider says we can never reach this identity (e.g. the user blocked the bot)."""
    identity = await _find_identity(session, channel, external_id)
    if identity is None:
        return False
    identity.unreachable_reason = reason[:200]
    return True


async def set_opt_out(
    session: AsyncSession, channel: str, external_id: str, opted_out: bool
) -> bool:
    """STOP / START keywords: consent per channel identity."""
    identity = await _find_identity(session, channel, external_id)
    if identity is None:
        return False
    identity.opted_out = opted_out
    return True


class ContactTaken(ValueError):
    """The email or phone already belongs to another customer (merge them instead)."""


async def add_contact(session: AsyncSession, customer_id: int, kind: str, raw: str) -> ContactPoint:
    """An agent stores an email or phone on a profile; the next message from it finds them."""
    if kind not in ("email", "phone"):
        raise InvalidContact("kind must be email or phone")
    value = normalize_email(raw) if kind == "email" else normalize_phone(raw)
    customer = await _live_customer(session, customer_id)
    owner = await _contact_owner(session, kind, value)
    if owner == customer.id:  # already on this profile: nothing to add
        return ContactPoint(customer_id=owner, kind=kind, value=value)
    if owner is not None:
        raise ContactTaken(f"{value} belongs to customer {owner}; merge the two customers instead")
    contact = ContactPoint(customer_id=customer.id, kind=kind, value=value)  # type: ignore[arg-type]
    session.add(contact)
    await session.flush()
    return contact
