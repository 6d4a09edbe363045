"""Activity events from other platforms: validate, store once, and let them move the CRM.

``ingest`` takes up to ``MAX_BATCH`` events in the caller's transaction. A malformed
event is reported by its index and the others are kept. Each event carries an
idempotency key (unique, ``INSERT ... ON CONFLICT DO NOTHING``), so a platform that
sends a batch again gets ``duplicates`` back and nothing changes twice. Only the events
actually inserted move enrollments, scores, the journey and the triggers, and they do so
per batch (a few statements for the whole batch), not per event.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import enrollments, interventions, journey, scores
from crm_core.identity import Who, resolve_contacts
from crm_core.models import EVENT_TYPES, ActivityEvent, Customer, CustomerScore, Program
from crm_core.normalize import InvalidContact, normalize_email, normalize_phone
from heliograph.bounds import DbId, TooDeep, UtcDatetime, check_depth, find_problem
from heliograph.bulk import among, chunks, insert_ignore, is_postgres
from heliograph.db import utcnow

MAX_BATCH = 1000
FUTURE_SLACK = timedelta(days=1)  # clocks differ; a week ahead is a mistake
MAX_DATA_DEPTH = 16  # levels of an event's ``data``; deeper is a sender's bug, not a fact
NEEDS = {
    "course_progress": ("program", "progress"),
    "lesson_completed": ("program",),
    "purchase": ("program", "amount"),
    "refund": ("program", "amount"),
    "milestone_reported": ("milestone",),
}


class EventCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: DbId | None = None
    email: str | None = Field(None, max_length=255)
    phone: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=200)
    timezone: str | None = Field(None, max_length=64)
    language: str | None = Field(None, max_length=16)
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")


class EventIn(BaseModel):
    """One activity event, as POST /api/v1/events takes it."""

    model_config = ConfigDict(extra="forbid")
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    idempotency_key: str = Field(min_length=1, max_length=200)
    occurred_at: UtcDatetime | None = Field(None, description="ISO-8601; naive is UTC; default now")
    customer: EventCustomer
    program: str | None = Field(None, max_length=64, description="the program's code")
    amount: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    progress: int | None = Field(None, ge=0, le=100, description="percent of the program")
    lesson: str | None = Field(None, max_length=200)
    milestone: str | None = Field(None, max_length=200)
    ticket_id: str | None = Field(None, max_length=200)
    status: Literal["open", "closed", "resolved"] | None = Field(None, description="tickets")
    attended: bool | None = Field(None, description="live calls: false = missed")
    satisfaction: int | None = Field(None, ge=1, le=5)
    referred_email: str | None = Field(None, max_length=255)
    data: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, raw: Any) -> Any:
        """What no column can hold (NUL, NaN, integers past 64 bits, ``data`` nested
        deeper than MAX_DATA_DEPTH) refuses this event alone, by its index, like any other
        mistake in it; the batch's other events are kept."""
        if isinstance(raw, dict):
            if (problem := find_problem(raw, strict_numbers=True)) is not None:
                raise problem
            try:
                check_depth(raw.get("data"), MAX_DATA_DEPTH)
            except TooDeep:
                raise ValueError(f"data: nested deeper than {MAX_DATA_DEPTH} levels") from None
        return raw

    @model_validator(mode="after")
    def _complete(self) -> EventIn:
        missing = [f for f in NEEDS.get(self.type, ()) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.type} event needs {' and '.join(missing)}")
        c = self.customer
        if c.id is None and not c.email and not c.phone:
            raise ValueError("the customer needs an id, an email or a phone")
        return self


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    customer_ids: list[int] = field(default_factory=list)
    journey_changes: int = 0
    interventions: int = 0

    def body(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "errors": self.errors}


class BatchTooLarge(ValueError):
    pass


def _problem(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _who(c: EventCustomer) -> Who:
    email = normalize_email(c.email) if c.email else None
    phone = normalize_phone(c.phone) if c.phone else None
    return Who(c.id, email, phone, c.name, c.timezone, c.language, c.country and c.country.upper())


async def _resolve(
    session: AsyncSession, people: list[Who]
) -> tuple[list[int | None], list[str | None], set[int]]:
    """``resolve_contacts`` in a savepoint: a concurrent writer that founded the same
    contact first makes it raise, and the run again finds the winner's customer."""
    for attempt in range(3):
        try:
            async with session.begin_nested():
                return await session.run_sync(lambda s: resolve_contacts(s.connection(), people))
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _row(
    e: EventIn, customer_id: int, program_id: int | None, at: datetime, received: datetime
) -> dict[str, Any]:
    status = e.status
    if e.type == "support_ticket":
        status = status or "open"
    elif e.type == "live_call_attended" and e.attended is False:
        status = "missed"
    ref = e.lesson or e.milestone or e.ticket_id or e.referred_email
    if e.type == "support_ticket" and not e.ticket_id:
        ref = e.idempotency_key  # each ticket event without an id is its own ticket
    return {
        "idempotency_key": e.idempotency_key,
        "customer_id": customer_id,
        "type": e.type,
        "occurred_at": at,
        "day": scores.day_number(at),
        "program_id": program_id,
        "amount": e.amount,
        "currency": e.currency,
        "progress": e.progress,
        "status": status,
        "ref": ref,
        "satisfaction": e.satisfaction,
        "data": e.data,
        "received_at": received,
    }


async def _program_ids(session: AsyncSession, codes: set[str]) -> dict[str, int]:
    if not codes:
        return {}
    rows = await session.execute(
        select(Program.code, Program.id).where(Program.code.in_(sorted(codes)))  # type: ignore[call-overload, attr-defined]
    )
    return dict(rows.all())


@dataclass
class _Locked:
    stages: dict[int, str] = field(default_factory=dict)
    ltv: dict[int, Any] = field(default_factory=dict)
    activity: dict[int, scores.Activity] = field(default_factory=dict)


async def _lock_customers(session: AsyncSession, customer_ids: list[int]) -> _Locked:
    """The journey stages, lifetime values and score aggregates of these customers, in
    one read, locked on PostgreSQL (in id order, so two batches never deadlock) until
    this batch commits."""
    found = _Locked()
    c, s = Customer, CustomerScore
    for part in chunks(sorted(customer_ids)):
        stmt = (
            select(c.id, c.journey_stage, c.lifetime_value, s.activity)  # type: ignore[call-overload]
            .outerjoin(s, s.customer_id == c.id)
            .where(among(session, c.id, part))
        )
        if is_postgres(session):
            stmt = stmt.order_by(c.id).with_for_update(of=c)
        for cid, stage, value, activity in (await session.execute(stmt)).all():
            found.stages[cid], found.ltv[cid] = stage, value
            if (parsed := scores.parse_activity(activity)) is not None:
                found.activity[cid] = parsed
    return found


def _validate(
    raw_events: list[Any], now: datetime
) -> tuple[list[tuple[int, EventIn]], list[dict[str, Any]]]:
    valid: list[tuple[int, EventIn]] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        try:
            event = raw if isinstance(raw, EventIn) else EventIn.model_validate(raw)
        except ValidationError as exc:
            errors.append({"index": index, "error": _problem(exc)})
            continue
        if event.occurred_at is not None and event.occurred_at > now + FUTURE_SLACK:
            errors.append({"index": index, "error": "occurred_at: is in the future"})
            continue
        valid.append((index, event))
    return valid, errors


async def ingest(
    session: AsyncSession, raw_events: list[Any], now: datetime | None = None
) -> IngestResult:
    """Store a batch of events and apply what they mean, in the caller's transaction."""
    if len(raw_events) > MAX_BATCH:
        raise BatchTooLarge(
            f"a batch holds at most {MAX_BATCH} events; this one has {len(raw_events)}"
        )
    now = now or utcnow()
    result = IngestResult()
    valid, result.errors = _validate(raw_events, now)
    programs = await _program_ids(session, {e.program for _, e in valid if e.program})
    people: list[tuple[int, EventIn, Who]] = []
    for index, event in valid:
        if event.program and event.program not in programs:
            result.errors.append(
                {"index": index, "error": f"program: unknown program {event.program!r}"}
            )
            continue
        try:
            people.append((index, event, _who(event.customer)))
        except InvalidContact as exc:
            result.errors.append({"index": index, "error": f"customer: {exc}"})
    ids, problems, new_customers = await _resolve(session, [w for _, _, w in people])
    rows: dict[str, dict[str, Any]] = {}
    for (index, event, _), cid, problem in zip(people, ids, problems, strict=True):
        if cid is None:
            result.errors.append({"index": index, "error": f"customer: {problem}"})
        elif event.idempotency_key in rows:
            result.duplicates += 1  # the same key twice in one batch: the first one counts
        else:
            program_id = programs.get(event.program) if event.program else None
            rows[event.idempotency_key] = _row(
                event, cid, program_id, event.occurred_at or now, now
            )
    result.errors.sort(key=lambda e: e["index"])
    if not rows:
        return result
    locked = await _lock_customers(session, sorted({r["customer_id"] for r in rows.values()}))
    for cid in new_customers:  # created by this batch: nothing to rebuild from the events
        locked.activity.setdefault(cid, scores.Activity())
    inserted: list[dict[str, Any]] = []
    for part in chunks(list(rows.values()), 1000):
        got = await insert_ignore(
            session,
            ActivityEvent.__table__,
            list(part),
            ["idempotency_key"],
            ["id", "idempotency_key"],  # type: ignore[attr-defined]
        )
        for event_id, key in got:
            rows[key]["id"] = event_id
            inserted.append(rows[key])
    result.accepted = len(inserted)
    result.duplicates += len(rows) - len(inserted)
    if inserted:
        await _apply(session, inserted, locked, now, result)
    return result


def _trigger_plan(inserted: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The rules a batch can newly satisfy, each for the customers concerned."""

    def who(*types: str) -> list[int]:
        return sorted({r["customer_id"] for r in inserted if r["type"] in types})

    return {
        "milestone_celebration": who("milestone_reported"),
        "support_outreach": who("support_ticket"),
        # A completion, or the activity that lifts engagement after one.
        "upsell": who("course_progress", "lesson_completed", "live_call_attended",
                      "community_post", "milestone_reported"),
    }  # fmt: skip


async def _apply(
    session: AsyncSession,
    inserted: list[dict[str, Any]],
    locked: _Locked,
    now: datetime,
    result: IngestResult,
) -> None:
    program_events = [
        enrollments.ProgramEvent(
            r["customer_id"],
            r["program_id"],
            r["type"],
            r["occurred_at"],
            r["progress"],
            r["status"],
            r["ref"],
            r["satisfaction"],
        )
        for r in inserted
        if r["program_id"] is not None
    ]
    held: dict[int, list[dict[str, Any]]] = {}
    await enrollments.apply_events(session, program_events, now, held)
    customer_ids = sorted({r["customer_id"] for r in inserted})
    facts = await scores.recompute(
        session,
        customer_ids,
        now,
        known_ltv=locked.ltv,
        new_events=inserted,
        stored=locked.activity,
        enrolled=scores.enrollment_facts_of(held),
    )
    by_customer: dict[int, list[journey.EventView]] = defaultdict(list)
    for r in inserted:
        by_customer[r["customer_id"]].append(
            journey.EventView(
                r["id"], r["type"], r["occurred_at"], r["progress"], r["amount"], r["status"]
            )
        )
    active_days = {cid: f.active_days_14 for cid, f in facts.items()}
    result.journey_changes = await journey.apply_events(
        session, locked.stages, by_customer, active_days
    )
    result.customer_ids = customer_ids
    fired = await interventions.evaluate(session, now=now, only=_trigger_plan(inserted))
    result.interventions = fired.created
