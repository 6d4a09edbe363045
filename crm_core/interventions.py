"""Interventions: a trigger rule fired for a customer, and what the team does about it.

``evaluate`` runs every enabled rule's finder (crm_core.triggers) over all customers
(the scheduler's pass, every 15 minutes) or, for a batch of events, the rules an event
can newly satisfy for the customers concerned (a milestone, support tickets, a
completion); the rules about an absence of activity are the pass's, since an event only
moves a customer away from them. New interventions are inserted with ON CONFLICT DO
NOTHING on ``(customer, rule, cause)``: a cause fires once, however many passes see it,
even two passes racing.

Each new intervention
- gets an owner: the first ``owner_resolvers`` hook that knows one (the inbox says "the
  agent of the customer's latest conversation"); none means whoever is on shift;
- is published as ``intervention.opened`` with everything a chat surface needs to show
  it to the owner, or to the on-shift agent when the owner is not on shift (the Slack
  and Telegram surfaces subscribe to it: ``jobs.subscribe(INTERVENTION_OPENED, kind)``,
  declared in ``crm_core.bus``);
- where its rule sends automatically, gets a ``intervention.send`` job (inbox/interventions.py)
  due when the customer's quiet hours end, in their own time zone. No rule does until an
  admin turns it to "send" (``set_rule``): by default each is a suggestion for an agent.

Each rule runs in a savepoint of its own: one that raises (or whose stored setting is out
of range) is rolled back and skipped, the others go on, and ``crm_core.rule_failures``
logs, counts and reports it to the admins.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import rule_failures
from crm_core.bus import (
    INTERVENTION_OPENED,
    INTERVENTION_RESOLVED,
    SEND_INTERVENTION,
    InterventionOpened,
    InterventionRef,
    InterventionResolved,
)
from crm_core.models import (
    INTERVENTION_STATES,
    Customer,
    Enrollment,
    Intervention,
    InterventionRule,
)
from crm_core.profile import first_name, quiet_until
from crm_core.programs import list_programs, suggest_next
from crm_core.triggers import (
    DEFAULT_RULES,
    FINDERS,
    Candidate,
    RuleConfig,
    check_rule_change,
    load_rules,
)
from heliograph import jobs
from heliograph.bulk import chunks, insert_ignore
from heliograph.db import utcnow
from heliograph.texts import Text, dump

log = logging.getLogger(__name__)

OwnerResolver = Callable[[AsyncSession, list[int]], Awaitable[dict[int, int]]]
owner_resolvers: list[OwnerResolver] = []  # customer ids -> team member id (who owns them)


class InterventionNotFound(LookupError):
    pass


class InterventionError(ValueError):
    """A change an intervention cannot take (the message says why)."""


@dataclass
class PassResult:
    created: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # rule -> why it was skipped


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


async def _customers(session: AsyncSession, ids: list[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    cols = (
        Customer.id,
        Customer.display_name,
        Customer.timezone,
        Customer.language,
        Customer.quiet_hours_start,
        Customer.quiet_hours_end,
        Customer.journey_stage,
    )
    for part in chunks(sorted(set(ids))):
        rows = await session.execute(select(*cols).where(Customer.id.in_(part)))  # type: ignore[call-overload, union-attr]
        found.update({r.id: r for r in rows.all()})
    return found


async def _owners(session: AsyncSession, ids: list[int]) -> dict[int, int]:
    owners: dict[int, int] = {}
    for resolver in owner_resolvers:
        for part in chunks(sorted(set(ids))):
            for cid, member_id in (await resolver(session, list(part))).items():
                owners.setdefault(cid, member_id)
    return owners


async def _programs_context(
    session: AsyncSession, found: list[tuple[RuleConfig, Candidate]]
) -> tuple[dict[int, Any], dict[int, dict[int, tuple[str, Any]]]]:
    """Programs by id, and each candidate customer's enrollments (program -> status, last)."""
    programs = {p.id: p for p in await list_programs(session)}
    ids = sorted({c.customer_id for _, c in found})
    enrolled: dict[int, dict[int, tuple[str, Any]]] = {}
    for part in chunks(ids):
        rows = await session.execute(
            select(
                Enrollment.customer_id,
                Enrollment.program_id,
                Enrollment.status,  # type: ignore[call-overload]
                Enrollment.last_activity_at,
            ).where(Enrollment.customer_id.in_(part))  # type: ignore[attr-defined]
        )
        for cid, pid, status, last in rows.all():
            enrolled.setdefault(cid, {})[pid] = (status, last)
    return programs, enrolled


def _fill(
    rule: RuleConfig, c: Candidate, programs: dict[int, Any], enrolled: dict[int, tuple[str, Any]]
) -> bool:
    """Name the program (and, for an upsell, the next one); False drops the candidate."""
    if c.program_id is None:
        active = [(last, pid) for pid, (status, last) in enrolled.items() if status == "active"]
        if active:
            c.program_id = max(active, key=lambda a: (a[0] is not None, a[0] or 0, a[1]))[1]
    program = programs.get(c.program_id)
    c.context["program"] = program.name if program else "your program"
    if rule.name == "upsell":
        nxt = suggest_next(program, programs.values(), set(enrolled)) if program else None
        if nxt is None:
            return False  # nothing left to suggest
        c.context["next_program"] = nxt.name
        c.context["suggested_program_id"] = nxt.id
        c.reason = Text("%(reason)s; suggest %(program)s", reason=c.reason, program=nxt.name)
    return True


async def evaluate(
    session: AsyncSession,
    now: datetime | None = None,
    customer_ids: list[int] | None = None,
    only: dict[str, list[int]] | None = None,
) -> PassResult:
    """Fire every enabled rule for all customers, or only for ``customer_ids``; or, with
    ``only``, just the rules named there, each for its own customers. Each rule in a
    savepoint: one that fails is skipped and reported, the others go on."""
    now = now or utcnow()
    result = PassResult()
    rules = await load_rules(session)
    plan: dict[str, list[int] | None]
    if only is not None:
        plan = {name: ids for name, ids in only.items() if ids}
    else:
        plan = dict.fromkeys(FINDERS, customer_ids)
    for name, ids in plan.items():
        rule = rules[name]
        if not rule.enabled:
            continue
        if rule.problem is not None:
            await _failed(session, result, rule, rule.problem)
            continue
        try:
            async with session.begin_nested():
                candidates, created = await _run_rule(session, rule, ids, now)
        except Exception as exc:  # any failure of one rule: the others still run
            log.debug("intervention rule %s raised", name, exc_info=True)
            await _failed(session, result, rule, f"{type(exc).__name__}: {exc}"[:500])
            continue
        result.candidates += candidates
        if created:
            result.by_rule[name] = result.by_rule.get(name, 0) + created
            result.created += created
    return result


async def _failed(session: AsyncSession, result: PassResult, rule: RuleConfig, why: str) -> None:
    result.failed[rule.name] = why
    await rule_failures.record(session, rule.name, rule.title, why)


async def _run_rule(
    session: AsyncSession, rule: RuleConfig, ids: list[int] | None, now: datetime
) -> tuple[int, int]:
    """One rule's finder, then its new interventions: ``(candidates, created)``."""
    found: list[tuple[RuleConfig, Candidate]] = []
    for part in [None] if ids is None else chunks(ids):
        part_ids = None if part is None else list(part)
        found.extend((rule, c) for c in await FINDERS[rule.name](session, rule, now, part_ids))
    candidates = len(found)
    if not found:
        return 0, 0
    programs, enrolled = await _programs_context(session, found)
    found = [(r, c) for r, c in found if _fill(r, c, programs, enrolled.get(c.customer_id, {}))]
    people = await _customers(session, [c.customer_id for _, c in found])
    owners = await _owners(session, list(people))
    rows = [_row(r, c, people[c.customer_id], owners.get(c.customer_id), now) for r, c in found]
    created: list[dict[str, Any]] = []
    by_key = {(r["customer_id"], r["rule"], r["cause_key"]): r for r in rows}
    for part in chunks(rows, 1000):
        got = await insert_ignore(
            session,
            Intervention.__table__,
            list(part),  # type: ignore[attr-defined]
            ["customer_id", "rule", "cause_key"],
            ["id", "customer_id", "rule", "cause_key"],
        )
        for iid, cid, rule_name, cause in got:
            row = by_key[(cid, rule_name, cause)]
            row["id"] = iid
            created.append(row)
    await _announce(session, created, people)
    return candidates, len(created)


def _row(
    rule: RuleConfig, c: Candidate, person: Any, owner_id: int | None, now: datetime
) -> dict[str, Any]:
    context = _Blank(
        {"first_name": first_name(person), **{k: str(v) for k, v in c.context.items()}}
    )
    send_after = None
    if rule.auto_send:
        send_after = quiet_until(person, now) or now
    return {
        "customer_id": c.customer_id,
        "rule": rule.name,
        "cause_key": c.cause_key[:100],
        "reason": str(c.reason),  # the English, as the API shows it
        "reason_text": dump(c.reason),  # the same, for the web app to translate
        "suggested_message": rule.message.format_map(context),
        "suggested_program_id": c.context.get("suggested_program_id"),
        "state": "open",
        "owner_id": owner_id,
        "auto_send": rule.auto_send,
        "send_status": "scheduled" if rule.auto_send else None,
        "send_after": send_after,
        "details": {"title": rule.title, "program_id": c.program_id, **c.context},
        "created_at": now,
        "updated_at": now,
    }


async def _announce(
    session: AsyncSession, created: list[dict[str, Any]], people: dict[int, Any]
) -> None:
    """One INSERT of ``intervention.opened`` jobs, one of send jobs (a pass makes many)."""
    await jobs.publish_many(
        session,
        INTERVENTION_OPENED,
        [opened_payload(r, people[r["customer_id"]]) for r in created],
    )
    await jobs.enqueue_many(
        session,
        [
            (SEND_INTERVENTION, InterventionRef(intervention_id=r["id"]), r["send_after"])
            for r in created
            if r["auto_send"]
        ],
    )


def opened_payload(row: dict[str, Any], person: Any) -> InterventionOpened:
    """What a chat surface shows: who, why, what to say, whose it is, and when it goes."""
    return InterventionOpened(
        intervention_id=row["id"],
        customer_id=row["customer_id"],
        customer_name=person.display_name,
        customer_timezone=person.timezone,
        customer_language=person.language,
        journey_stage=person.journey_stage,
        rule=row["rule"],
        title=row["details"].get("title"),
        reason=row["reason"],
        suggested_message=row["suggested_message"],
        suggested_program_id=row["suggested_program_id"],
        owner_id=row["owner_id"],  # None: the on-shift agent takes it
        auto_send=row["auto_send"],
        send_after=row["send_after"].isoformat() if row["send_after"] else None,
    )


# An intervention's state as a refusal names it (each a msgid of its own).
_STATE_WORDS = {"done": Text("done"), "dismissed": Text("dismissed"), "open": Text("open")}


async def get_intervention(session: AsyncSession, intervention_id: int) -> Intervention:
    found = await session.get(Intervention, intervention_id)
    if found is None:
        raise InterventionNotFound(Text("intervention %(id)s does not exist", id=intervention_id))
    return found


async def resolve(
    session: AsyncSession, intervention_id: int, state: str, actor: str
) -> Intervention:
    """Mark an open intervention done or dismissed (dismissing cancels an unsent message)."""
    if state not in ("done", "dismissed"):
        raise InterventionError(Text("an intervention can be marked done or dismissed"))
    found = await get_intervention(session, intervention_id)
    if found.state != "open":
        raise InterventionError(
            Text(
                "intervention %(id)s is already %(state)s",
                id=intervention_id,
                state=Text(_STATE_WORDS.get(found.state, found.state)),
            )
        )
    now = utcnow()
    found.state, found.resolved_at, found.resolved_by, found.updated_at = state, now, actor, now
    if state == "dismissed" and found.send_status == "scheduled":
        found.send_status, found.send_note = "cancelled", f"dismissed by {actor}"
    await session.flush()
    await jobs.publish(
        session,
        INTERVENTION_RESOLVED,
        InterventionResolved(intervention_id=found.id, state=state, by=actor),  # type: ignore[arg-type]
    )
    return found


async def record_sent(
    session: AsyncSession, found: Intervention, message_id: int, channel: str
) -> None:
    """The intervention's suggested message went out on ``channel`` (inbox sends it): it
    is done, by "auto"."""
    found.send_status, found.sent_message_id = "sent", message_id
    found.send_note = f"sent on {channel}"
    await resolve(session, found.id, "done", "auto")  # type: ignore[arg-type]


def record_send_deferred(found: Intervention, until: datetime) -> None:
    """The message waits for the end of the customer's quiet hours."""
    found.send_after = until


def record_send_skipped(found: Intervention, why: str) -> None:
    """The message cannot be sent (no channel may be used, ...); the intervention stays open."""
    found.send_status, found.send_note = "skipped", why[:300]
    found.updated_at = utcnow()


@dataclass
class InterventionFilter:
    state: str | None = None
    rule: str | None = None
    owner_id: int | None = None
    customer_id: int | None = None
    before_id: int | None = None
    limit: int = 50


async def list_interventions(session: AsyncSession, f: InterventionFilter) -> list[Intervention]:
    if f.state is not None and f.state not in INTERVENTION_STATES:
        raise InterventionError(f"state must be one of {', '.join(INTERVENTION_STATES)}")
    if f.rule is not None and f.rule not in DEFAULT_RULES:
        raise InterventionError(f"rule must be one of {', '.join(DEFAULT_RULES)}")
    i = Intervention
    stmt = select(i)
    for column, value in (
        (i.state, f.state),
        (i.rule, f.rule),
        (i.owner_id, f.owner_id),
        (i.customer_id, f.customer_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.before_id is not None:
        stmt = stmt.where(i.id < f.before_id)  # type: ignore[operator]
    stmt = stmt.order_by(i.id.desc()).limit(f.limit)  # type: ignore[union-attr]
    return list((await session.execute(stmt)).scalars().all())


async def set_rule(
    session: AsyncSession,
    name: str,
    actor: str,
    enabled: bool | None = None,
    auto_send: bool | None = None,
    params: dict[str, Any] | None = None,
    message: str | None = None,
) -> RuleConfig:
    """An operator changes a rule; what is not given keeps its current value. The
    parameters after the change are checked whole, so a value stored before the checks
    existed has to be corrected with it."""
    row = await session.get(InterventionRule, name) if name in DEFAULT_RULES else None
    stored = row.params if row is not None and isinstance(row.params, dict) else {}
    base = DEFAULT_RULES.get(name)
    current = {**(base.params if base else {}), **stored}
    merged = check_rule_change(name, params, message, current)
    rule = (await load_rules(session))[name]
    if row is None:
        row = InterventionRule(name=name, message="")
        session.add(row)
    row.enabled = rule.enabled if enabled is None else enabled
    row.auto_send = rule.auto_send if auto_send is None else auto_send
    row.params = merged
    row.message = message if message is not None else rule.message
    row.updated_at, row.updated_by = utcnow(), actor
    await session.flush()
    return (await load_rules(session))[name]
