"""The customer profile: demographics, communication preferences, consent, quiet hours.

Quiet hours are wall-clock times in the customer's own time zone (``21:00``-``08:00`` by
default, crossing midnight). A message we start ourselves (an automatic intervention)
waits until they end; a reply to a customer who just wrote is not ours to hold back.
Consent is per channel identity (``Identity.opted_out``: STOP on SMS says nothing about
email), so the channel we write on is chosen among the identities that may be written to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import contacts_of, get_customer, identities_of
from crm_core.journey import journey_of
from crm_core.models import Customer, Identity, Intervention, Program
from crm_core.normalize import search_key
from crm_core.programs import enrollments_of
from crm_core.scores import scores_of
from heliograph.db import utcnow
from heliograph.texts import Text

DEFAULT_QUIET_START = "21:00"
DEFAULT_QUIET_END = "08:00"
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
CHANNELS = ("email", "sms", "whatsapp", "telegram", "slack", "api")


class ProfileError(ValueError):
    """A profile field has a value we cannot use (the message names it)."""


def zone(name: str | None) -> ZoneInfo:
    """The customer's zone; an unknown or missing one is UTC (and says so nowhere else)."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _clock(value: str) -> time:
    match = _HHMM.match(value)
    if match is None:
        raise ProfileError(f"{value!r} is not a time HH:MM (00:00-23:59)")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False  # "21:00-21:00" means no quiet hours
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # crosses midnight


def quiet_hours_of(customer: Any) -> QuietHours:
    return QuietHours(
        _clock(customer.quiet_hours_start or DEFAULT_QUIET_START),
        _clock(customer.quiet_hours_end or DEFAULT_QUIET_END),
    )


def _local_at(tz: ZoneInfo, day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def quiet_until(customer: Any, now: datetime) -> datetime | None:
    """When the customer's quiet hours end (UTC) if ``now`` is inside them, else None.

    ``customer`` needs ``timezone``, ``quiet_hours_start`` and ``quiet_hours_end``.
    """
    quiet = quiet_hours_of(customer)
    tz = zone(customer.timezone)
    local = now.astimezone(tz)
    if not quiet.contains(local.time()):
        return None
    end = _local_at(tz, local.date(), quiet.end)
    if end <= local:
        end = _local_at(tz, local.date() + timedelta(days=1), quiet.end)
    # A wall-clock end inside a DST gap resolves to the later side, which is still the
    # right moment to stop waiting.
    return end.astimezone(now.tzinfo)


def first_name(customer: Any) -> str:
    name = (customer.display_name or "").strip()
    return name.split()[0] if name else "there"


def choose_identity(
    identities: list[Identity], preferred_channel: str | None
) -> tuple[Identity | None, str]:
    """The identity to write to first, and why (or why there is none).

    With a preferred channel, only that channel: a customer who said "email me" and
    opted out of it is not written to on WhatsApp instead. Without one, the identity
    seen most recently among those that may be written to.
    """
    usable = [i for i in identities if not i.opted_out and not i.unreachable_reason]
    if preferred_channel:
        on_channel = [i for i in identities if i.channel == preferred_channel]
        allowed = [i for i in on_channel if i in usable]
        if allowed:
            return _latest(allowed), Text(
                "preferred channel %(channel)s", channel=preferred_channel
            )
        if on_channel and all(i.opted_out for i in on_channel):
            why = Text("opted out of %(channel)s, the preferred channel", channel=preferred_channel)
            return None, why
        if on_channel:
            why = Text(
                "unreachable on %(channel)s, the preferred channel", channel=preferred_channel
            )
            return None, why
        why = Text("no identity on %(channel)s, the preferred channel", channel=preferred_channel)
        return None, why
    if usable:
        chosen = _latest(usable)
        return chosen, Text("most recently used channel %(channel)s", channel=chosen.channel)
    if identities:
        return None, Text("opted out of (or unreachable on) every channel")
    return None, Text("no channel identity to write to")


def _latest(identities: list[Identity]) -> Identity:
    floor = datetime.min.replace(tzinfo=utcnow().tzinfo)
    return max(identities, key=lambda i: (i.last_seen_at or i.created_at or floor, i.id or 0))


PROFILE_FIELDS = (
    "display_name",
    "language",
    "timezone",
    "country",
    "preferred_channel",
    "quiet_hours_start",
    "quiet_hours_end",
    "interests",
    "vip",
)


def _check(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "timezone" and zone(value).key != value:
        raise ProfileError(f"timezone {value!r} is not an IANA zone name (e.g. Europe/London)")
    if field in ("quiet_hours_start", "quiet_hours_end"):
        _clock(value)
    if field == "preferred_channel" and value not in CHANNELS:
        raise ProfileError(f"preferred_channel must be one of {', '.join(CHANNELS)}")
    if field == "country" and not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ProfileError(f"country {value!r} is not an ISO 3166 two-letter code")
    if field == "country":
        return value.upper()
    if field == "interests":
        return sorted({str(v).strip().lower() for v in value if str(v).strip()})
    return value


async def update_profile(
    session: AsyncSession, customer_id: int, changes: dict[str, Any]
) -> Customer:
    """Set the given profile fields (an agent's edit); unknown fields are refused."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ProfileError(f"not profile fields: {', '.join(sorted(unknown))}")
    customer = await get_customer(session, customer_id)
    if customer.erased_at is not None:
        raise ProfileError(f"customer {customer_id} was erased")
    for field, value in changes.items():
        value = _check(field, value)
        if field == "display_name":
            customer.display_name = (value or "")[:200]
            customer.search_name = search_key(customer.display_name)
        elif field == "vip":
            customer.vip = bool(value)
        else:
            setattr(customer, field, value)
    customer.updated_at = utcnow()
    await session.flush()
    return customer


async def full_profile(session: AsyncSession, customer_id: int) -> dict[str, Any]:
    """Everything an agent sees about a customer in one read: demographics, preferences,
    consent per channel identity, contacts, interests, journey, programs, scores, LTV and
    the interventions still open."""
    customer = await get_customer(session, customer_id)
    cid: int = customer.id  # type: ignore[assignment]
    identities = await identities_of(session, cid)
    quiet = quiet_hours_of(customer)
    names = {p.id: p for p in (await session.execute(select(Program))).scalars()}
    open_interventions = await session.execute(
        select(Intervention)
        .where(Intervention.customer_id == cid, Intervention.state == "open")
        .order_by(Intervention.id.desc())
    )
    score = await scores_of(session, cid)
    return {
        "customer": customer,
        "preferences": {
            "preferred_channel": customer.preferred_channel,
            "quiet_hours": {
                "start": quiet.start.strftime("%H:%M"),
                "end": quiet.end.strftime("%H:%M"),
                "timezone": zone(customer.timezone).key,
                "default": customer.quiet_hours_start is None or customer.quiet_hours_end is None,
            },
            # Per channel: may we write there? (False once any identity on it said STOP.)
            "consent": {
                i.channel: all(not j.opted_out for j in identities if j.channel == i.channel)
                for i in identities
            },
        },
        "interests": customer.interests or [],
        "identities": identities,
        "contacts": await contacts_of(session, cid),
        "enrollments": [
            {"enrollment": e, "program": names.get(e.program_id)}
            for e in await enrollments_of(session, cid)
        ],
        "journey": await journey_of(session, cid),
        "scores": score,
        "open_interventions": list(open_interventions.scalars().all()),
    }
