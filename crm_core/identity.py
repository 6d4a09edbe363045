"""Resolve senders to customers, race-safely; merge customers; search them.

One rule finds the customer behind a sender, ``resolve_senders``: set-based Core
statements for any number of senders (the ingest writer's batch; one sender is a batch of
one). A sender is its channel identity ``(channel, external_id)``; a new identity joins
the customer who owns its email or phone (contact points), else founds a new customer.

Two first messages from one sender can arrive at the same moment (a provider retry
racing the original, or two processes). Both look up the identity, find nothing, and
try to insert it: the unique key ``(channel, external_id)`` lets exactly one win. The
loser's statement raises; its transaction rolls back and is run again (the ingest
writer's retry), now finding the winner's row: one customer, never two (Chatwoot's
duplicate-contact bug came from a non-unique key).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, insert, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import ContactPoint, Customer, Identity
from crm_core.normalize import InvalidContact, normalize_email, normalize_phone, search_key
from heliograph import audit
from heliograph.bulk import insert_ids, new_row, pairs_in
from heliograph.db import is_unique_violation, utcnow

MergeHook = Callable[[AsyncSession, int, int], Awaitable[dict[str, int]]]
merge_hooks: list[MergeHook] = []  # other packages move their rows (conversations, ...) here


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
    country: str | None = None


@dataclass(frozen=True)
class Who:
    """A customer as a CRM event names them: by id, or by email and/or phone (already
    normalised), with what a new profile starts from."""

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


def _contacts(sender: SenderProfile) -> list[tuple[str, str]]:
    return list(_normalized(sender.email, sender.phone))


@functools.lru_cache(maxsize=4096)  # returning senders repeat themselves; parsing phones is dear
def _normalized(email: str | None, phone: str | None) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    if email:
        try:
            found.append(("email", normalize_email(email)))
        except InvalidContact:
            pass  # a bad optional hint is dropped, not fatal to the message
    if phone:
        try:
            found.append(("phone", normalize_phone(phone)))
        except InvalidContact:
            pass
    return tuple(found)


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


async def owner_of(
    session: AsyncSession, channel: str, external_id: str, contact: tuple[str, str] | None = None
) -> int | None:
    """The customer id behind the identity ``(channel, external_id)``, else the one who has
    the contact point ``contact`` ((kind, normalised value)), if any (e.g. the email channel
    telling an agent whose address an unverified mail claims)."""
    identity = await _find_identity(session, channel, external_id)
    if identity is not None:
        return identity.customer_id
    return await _contact_owner(session, *contact) if contact is not None else None


@dataclass(frozen=True)
class ResolvedIds:
    """``resolve_senders``' answer for one sender: ids, and what a new conversation needs."""

    customer_id: int
    identity_id: int
    created: bool
    language: str | None
    vip: bool


_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]
_IDENTITY = Identity.__table__  # type: ignore[attr-defined]
_CONTACT = ContactPoint.__table__  # type: ignore[attr-defined]
# Fill blanks only, in SQL so that an agent's concurrent edit is never overwritten. Typed
# parameters: PostgreSQL cannot tell the type of a bare "$2 IS NOT NULL".
_NAME = bindparam("name", type_=_CUSTOMER.c.display_name.type)
_KEY = bindparam("key", type_=_CUSTOMER.c.search_name.type)
_FILL_PROFILE = (
    update(_CUSTOMER)
    .where(_CUSTOMER.c.id == bindparam("cid"))
    .values(
        display_name=case(
            (and_(_CUSTOMER.c.display_name == "", _NAME.is_not(None)), _NAME),
            else_=_CUSTOMER.c.display_name,
        ),
        search_name=case(
            (and_(_CUSTOMER.c.display_name == "", _KEY.is_not(None)), _KEY),
            else_=_CUSTOMER.c.search_name,
        ),
        language=func.coalesce(
            func.nullif(_CUSTOMER.c.language, ""),
            bindparam("language", type_=_CUSTOMER.c.language.type),
        ),
        timezone=func.coalesce(
            func.nullif(_CUSTOMER.c.timezone, ""),
            bindparam("timezone", type_=_CUSTOMER.c.timezone.type),
        ),
        last_seen_at=bindparam("seen", type_=_CUSTOMER.c.last_seen_at.type),
    )
)


def _live_rows(conn: Connection, ids: set[int], missing_ok: bool = False) -> dict[int, Any]:
    """Customer rows by id, each id mapped to its surviving (unmerged) profile's row. An id
    with no such customer raises ``CustomerNotFound``, or with ``missing_ok`` is left out."""
    cols = (
        _CUSTOMER.c.id,
        _CUSTOMER.c.merged_into_id,
        _CUSTOMER.c.language,
        _CUSTOMER.c.vip,
        _CUSTOMER.c.erased_at,
    )
    found: dict[int, Any] = {}
    wanted = set(ids)
    for _ in range(10):
        if not wanted:
            break
        rows = (conn.execute(select(*cols).where(_CUSTOMER.c.id.in_(wanted)))).all()
        found.update({row.id: row for row in rows})
        if len(rows) < len(wanted) and not missing_ok:
            raise CustomerNotFound(f"customers {sorted(wanted - set(found))} do not exist")
        wanted = {r.merged_into_id for r in rows if r.merged_into_id is not None} - set(found)
    live: dict[int, Any] = {}
    for start in ids:
        row = found.get(start)
        for _ in range(10):
            if row is None or row.merged_into_id is None:
                break
            row = found.get(row.merged_into_id)
        else:
            row = None
        if row is not None:
            live[start] = row
        elif not missing_ok:
            raise CustomerNotFound(f"customer {start}: merge chain too long")
    return live


def resolve_senders(conn: Connection, senders: Sequence[SenderProfile]) -> list[ResolvedIds]:
    """The customer behind each sender, in the caller's transaction, in a fixed handful of
    set-based Core statements whatever the number of senders. The outcome is that of
    resolving them one after the other: a repeated sender gets the same customer; a known
    identity's customer (following merges) has its blanks filled from what the channel
    says (never overwriting what an agent set), its identity marked seen and reachable
    again (they wrote to us, e.g. unblocked the bot); a new sender whose email or phone is
    known (or was given by an earlier new sender in the list) joins that customer, else
    founds one; contact points nobody owns go to the sender's customer. A clash with a
    concurrent writer raises ``IntegrityError``: the caller rolls back and runs it again
    (``inbox.ingest_batch``), and the retry finds the winner's rows."""
    first_of: dict[tuple[str, str], SenderProfile] = {}
    for sender in senders:
        first_of.setdefault((sender.channel, sender.external_id), sender)
    keys = list(first_of)
    rows = conn.execute(
        select(_IDENTITY.c.id, _IDENTITY.c.channel, _IDENTITY.c.external_id)
        .add_columns(_IDENTITY.c.customer_id)
        .where(pairs_in(_IDENTITY.c.channel, _IDENTITY.c.external_id, keys))
    )
    known = {(r.channel, r.external_id): r for r in rows.all()}
    contacts = {key: _contacts(first) for key, first in first_of.items()}
    owners = _contact_owners(conn, [c for found in contacts.values() for c in found])
    new_keys = [key for key in keys if key not in known]
    live = _live_rows(
        conn,
        {r.customer_id for r in known.values()}
        | {owners[c] for key in new_keys for c in contacts[key] if c in owners},
    )
    now = utcnow()
    owner_of = _join_or_found(new_keys, contacts, owners, live)
    # What the senders say fills each customer's blanks (the first sender with a detail).
    fills: dict[int | tuple[str, str], dict[str, Any]] = {}
    for key in keys:
        owner = owner_of.get(key) or live[known[key].customer_id].id
        _gather_fill(fills.setdefault(owner, _blank_fill()), first_of[key])
    founded = _found_customers(conn, [o for o in fills if isinstance(o, tuple)], fills, now, now)
    customer_of = {key: live[row.customer_id].id for key, row in known.items()}
    for key, owner in owner_of.items():
        customer_of[key] = founded[owner] if isinstance(owner, tuple) else owner
    identity_of = {key: row.id for key, row in known.items()}
    identity_of.update(_add_identities(conn, new_keys, customer_of, first_of, now))
    if known:
        conn.execute(
            update(_IDENTITY)
            .where(_IDENTITY.c.id.in_([row.id for row in known.values()]))
            .values(last_seen_at=now, unreachable_reason=None)
        )
    existing = [{**f, "cid": o, "seen": now} for o, f in fills.items() if isinstance(o, int)]
    if existing:
        conn.execute(_FILL_PROFILE, existing)
    # Contact points nobody owns yet go to the sender's customer (first come, first served).
    _add_contacts(conn, keys, contacts, owners, customer_of, now)
    language = {
        row.id: row.language or fills.get(row.id, {}).get("language") for row in live.values()
    }
    language.update({founded[label]: fills[label]["language"] for label in founded})
    vip = {row.id: bool(row.vip) for row in live.values()}
    answers, seen = [], set()
    for sender in senders:
        key = (sender.channel, sender.external_id)
        customer_id = customer_of[key]
        answers.append(
            ResolvedIds(
                customer_id,
                identity_of[key],
                created=owner_of.get(key) == key and key not in seen,
                language=language.get(customer_id),
                vip=vip.get(customer_id, False),
            )
        )
        seen.add(key)
    return answers


def _contact_owners(
    conn: Connection, contacts: list[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """``_contact_owner`` for many contacts in one statement."""
    if not contacts:
        return {}
    rows = conn.execute(
        select(_CONTACT.c.kind, _CONTACT.c.value, _CONTACT.c.customer_id).where(
            pairs_in(_CONTACT.c.kind, _CONTACT.c.value, list(dict.fromkeys(contacts)))
        )
    )
    return {(r.kind, r.value): r.customer_id for r in rows.all()}


Label = tuple[str, str]  # a new customer before it has an id: the key of who founds it


def _join_or_found(
    new_keys: list[Label],
    contacts: dict[Label, list[tuple[str, str]]],
    owners: dict[tuple[str, str], int],
    live: dict[int, Any],
) -> dict[Label, int | Label]:
    """Who each newcomer belongs to: the live owner of its first known contact (also one a
    newcomer before it in the list brought), else a new customer it founds, labelled by
    its own key. One rule for a sender's first message and a CRM event's new contact."""
    owner_of: dict[Label, int | Label] = {}
    claimed: dict[tuple[str, str], int | Label] = {}
    for key in new_keys:
        owner: int | Label = key
        for contact in contacts[key]:
            if contact in owners or contact in claimed:
                owner = live[owners[contact]].id if contact in owners else claimed[contact]
                break
        owner_of[key] = owner
        for contact in contacts[key]:
            claimed.setdefault(contact, owner)
    return owner_of


def _add_contacts(
    conn: Connection,
    keys: Sequence[Label],
    contacts: dict[Label, list[tuple[str, str]]],
    owners: dict[tuple[str, str], int],
    customer_of: dict[Label, int],
    now: datetime,
) -> None:
    """Contact points nobody owns yet go to their newcomer's customer (first come, first
    served). A concurrent writer taking one first makes the INSERT raise ``IntegrityError``."""
    adds: dict[tuple[str, str], int] = {}
    for key in keys:
        for contact in contacts[key]:
            if contact not in owners:
                adds.setdefault(contact, customer_of[key])
    if adds:
        conn.execute(
            insert(_CONTACT),
            [
                {"customer_id": c, "kind": k, "value": v, "created_at": now}
                for (k, v), c in adds.items()
            ],
        )


def resolve_contacts(
    conn: Connection, people: Sequence[Who]
) -> tuple[list[int | None], list[str | None], set[int]]:
    """The customer each CRM event names, in the caller's transaction, set-based like
    ``resolve_senders`` and by the same rule for a new contact (``_join_or_found``): by id,
    following merges; else the live owner of the email (then the phone); else one new
    customer per email (else phone), which an entry later in the list with the same
    contact joins. No channel identity is made and a known customer's profile is left as
    it is (an event is not the customer speaking). Per entry, the customer id or why
    there is none; and the ids of the customers founded here (no history yet). A clash
    with a concurrent writer raises ``IntegrityError``: the caller runs it again
    (``crm_core.events``), finding the winner's rows."""
    first_of: dict[Label, Who] = {}
    contacts: dict[Label, list[tuple[str, str]]] = {}
    for who in people:
        if who.id is None and who.key is not None:
            first_of.setdefault(who.key, who)
            found = contacts.setdefault(who.key, [who.key])
            found += [c for c in (("email", who.email), ("phone", who.phone)) if c[1]]  # type: ignore[misc]
    contacts = {key: list(dict.fromkeys(found)) for key, found in contacts.items()}
    owners = _contact_owners(conn, [c for found in contacts.values() for c in found])
    ids = {who.id for who in people if who.id is not None}
    live = _live_rows(conn, ids | set(owners.values()), missing_ok=True)
    keys = list(first_of)
    owner_of = _join_or_found(keys, contacts, owners, live)
    fills: dict[int | Label, dict[str, Any]] = {}
    for key in keys:
        if isinstance(owner_of[key], tuple):
            _gather_fill(fills.setdefault(owner_of[key], _blank_fill()), first_of[key])
    founded = _found_customers(conn, list(fills), fills, utcnow(), None)
    customer_of = {
        key: founded[owner] if isinstance(owner, tuple) else owner
        for key, owner in owner_of.items()
    }
    newcomers = [key for key in keys if isinstance(owner_of[key], tuple)]
    _add_contacts(conn, newcomers, contacts, owners, customer_of, utcnow())
    new_ids = set(founded.values())
    result: list[int | None] = []
    errors: list[str | None] = []
    for who in people:
        if who.id is not None:
            row = live.get(who.id)
            cid, missing = (row.id if row else None), f"customer {who.id} does not exist"
        else:
            cid = customer_of.get(who.key) if who.key else None
            row = live.get(cid) if cid is not None else None
            missing = "the customer needs an id, an email or a phone"
        if cid is None:
            result.append(None)
            errors.append(missing)
        elif row is not None and row.erased_at is not None:
            result.append(None)
            errors.append(f"customer {cid} was erased")
        else:
            result.append(cid)
            errors.append(None)
    return result, errors, new_ids


def _blank_fill() -> dict[str, Any]:
    return {"name": None, "key": None, "language": None, "timezone": None, "country": None}


def _gather_fill(fill: dict[str, Any], sender: SenderProfile | Who) -> None:
    """``_fill_profile``'s rule for a set-based UPDATE: the first sender with a detail gives it."""
    if sender.name and fill["name"] is None:
        fill["name"], fill["key"] = sender.name[:200], search_key(sender.name)
    if sender.language and fill["language"] is None:
        fill["language"] = sender.language[:16]
    if sender.timezone and fill["timezone"] is None:
        fill["timezone"] = sender.timezone[:64]
    if sender.country and fill["country"] is None:
        fill["country"] = sender.country[:2]


def _found_customers(
    conn: Connection,
    labels: list[Label],
    fills: dict[int | Label, dict[str, Any]],
    now: datetime,
    seen: datetime | None,
) -> dict[Label, int]:
    """Insert the customers that newcomers found, in one multi-row INSERT; label -> id.
    SQLite does not promise RETURNING rows in VALUES order, so each row carries a one-off
    marker in ``search_name`` that is read back with its id and then replaced."""
    if not labels:
        return {}
    tag = uuid.uuid4().hex
    rows = []
    for n, label in enumerate(labels):
        fill = fills[label]
        rows.append(
            new_row(
                Customer,
                display_name=fill["name"] or "",
                search_name=f"\x01{tag}:{n}",
                language=fill["language"],
                timezone=fill["timezone"],
                country=fill["country"],
                last_seen_at=seen,
                created_at=now,
                updated_at=now,
            )
        )
    ids = insert_ids(conn, _CUSTOMER, rows, key=("search_name",))
    conn.execute(
        update(_CUSTOMER).where(_CUSTOMER.c.id == bindparam("b_id")),
        [
            {"b_id": cid, "search_name": fills[label]["key"] or ""}
            for cid, label in zip(ids, labels, strict=True)
        ],
    )
    return dict(zip(labels, ids, strict=True))


def _add_identities(
    conn: Connection,
    new_keys: list[tuple[str, str]],
    customer_of: dict[tuple[str, str], int],
    first_of: dict[tuple[str, str], SenderProfile],
    now: datetime,
) -> dict[tuple[str, str], int]:
    if not new_keys:
        return {}
    rows = []
    for key in new_keys:
        name = first_of[key].name
        rows.append(
            {
                "customer_id": customer_of[key],
                "channel": key[0],
                "external_id": key[1],
                "display_name": name[:200] if name else None,
                "last_seen_at": now,
                "opted_out": False,
                "created_at": now,
            }
        )
    ids = insert_ids(conn, _IDENTITY, rows, key=("channel", "external_id"))
    return dict(zip(new_keys, ids, strict=True))


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
    audit.record(
        session,
        actor=actor,
        action="customer.merge",
        subject_type="customer",
        subject_id=target.id,
        details={"source_id": source.id, "target_id": target.id, "moved": moved},
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


_IDENTITY_KEY = and_(
    _IDENTITY.c.channel == bindparam("ch"), _IDENTITY.c.external_id == bindparam("xid")
)
_SET_OPT_OUT = update(_IDENTITY).where(_IDENTITY_KEY).values(opted_out=bindparam("opted_out"))


def set_opt_outs(conn: Connection, changes: Sequence[tuple[str, str, bool]]) -> None:
    """STOP / START keywords: consent per channel identity, ``(channel, external_id,
    opted_out)`` applied in order (the last word on an identity stands); unknown
    identities are skipped."""
    if changes:
        conn.execute(_SET_OPT_OUT, [{"ch": c, "xid": x, "opted_out": o} for c, x, o in changes])


async def set_opt_out(
    session: AsyncSession, channel: str, external_id: str, opted_out: bool
) -> bool:
    """``set_opt_outs`` for one identity in an ORM session; False when it is unknown."""
    result = await session.execute(
        _SET_OPT_OUT, {"ch": channel, "xid": external_id, "opted_out": opted_out}
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


async def add_identity(
    session: AsyncSession, customer_id: int, channel: str, external_id: str
) -> Identity | None:
    """A new channel identity on a profile, in a savepoint; None when ``(channel,
    external_id)`` is taken already (another profile's: not this one's to use)."""
    try:
        async with session.begin_nested():
            found = Identity(customer_id=customer_id, channel=channel, external_id=external_id)
            session.add(found)
            await session.flush()
            return found
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        return None
