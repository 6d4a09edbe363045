"""The trigger rules: defaults, an operator's overrides, and one set-based finder per rule.

- inactivity_nudge: an active enrollment and no course activity for ``days`` (7), but not
  for more than ``max_days`` (30); or enrolled that long ago and never started. Cause:
  the last course event.
- low_engagement: engagement below ``below`` (25) with an active enrollment older than
  ``grace_days`` (14); quiet for ``cooldown_days`` (30) after firing. Cause: the last
  course event. For an agent.
- upsell: a program completed within ``within_days`` (30), engagement at least
  ``min_engagement`` (70) and a next program to suggest. Cause: the completed
  enrollment. For an agent.
- milestone_celebration: a milestone reported within ``within_days`` (7). Cause: the
  milestone event.
- support_outreach: ``tickets`` (3) or more support tickets opened within ``within_days``
  (30); quiet for ``cooldown_days`` (30). Cause: the latest ticket. For an agent.

Every rule starts as a suggestion for an agent (``auto_send`` off): a fresh install, or
one pointed at an imported history, writes to nobody by itself until an admin turns a
rule to "send" (``PATCH /api/v1/intervention-rules/{name}`` with ``auto_send: true``).
Each parameter's type and range: ``crm_core.rule_params``.

Each finder is one SELECT over all customers (or the customers a batch of events
touched), on indexed columns, that already leaves out causes that fired before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, cast, exists, func, literal, literal_column, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import (
    PARTIAL_INDEX_TYPES,
    ActivityEvent,
    Customer,
    CustomerScore,
    Enrollment,
    Intervention,
    InterventionRule,
)
from crm_core.rule_params import (
    PARAMS,
    RuleParamError,
    check_message,
    check_params,
    defaults,
    limits,
)
from crm_core.scores import day_number
from heliograph.bulk import among, chunks
from heliograph.texts import Plural, Text


class RuleError(ValueError):
    """A rule setting that cannot be used (the message says which)."""


@dataclass(frozen=True)
class RuleConfig:
    name: str
    title: str
    enabled: bool
    auto_send: bool
    params: dict[str, int]
    message: str  # {first_name}, {program}, {next_program}, {milestone} are filled in
    problem: str | None = None  # a stored setting it cannot run with: the pass skips it


DEFAULT_RULES: dict[str, RuleConfig] = {
    r.name: r
    for r in (
        RuleConfig(
            "inactivity_nudge",
            "Gentle nudge after a week without course activity",
            True,
            False,
            defaults("inactivity_nudge"),
            "Hi {first_name}, we've missed you in {program}! Your next lesson is waiting "
            "whenever you're ready - even ten minutes today counts.",
        ),
        RuleConfig(
            "low_engagement",
            "Personal outreach on low engagement",
            True,
            False,
            defaults("low_engagement"),
            "Hi {first_name}, I wanted to check in personally - how is {program} going for "
            "you? If something is getting in the way, I'd love to help.",
        ),
        RuleConfig(
            "upsell",
            "Suggest the next program after a completion",
            True,
            False,
            defaults("upsell"),
            "Hi {first_name}! Congratulations on completing {program}. Many students who "
            "finish it continue with {next_program} - would you like to hear more about it?",
        ),
        RuleConfig(
            "milestone_celebration",
            "Celebrate a milestone",
            True,
            False,
            defaults("milestone_celebration"),
            "Hi {first_name}! Congratulations on reaching {milestone} - that's a real step, "
            "and we're proud of you.",
        ),
        RuleConfig(
            "support_outreach",
            "Proactive outreach after repeated support issues",
            True,
            False,
            defaults("support_outreach"),
            "Hi {first_name}, I noticed you've had to contact support several times lately. "
            "I'm sorry about that - could we find a moment to make sure everything is sorted?",
        ),
    )
}


async def load_rules(session: AsyncSession) -> dict[str, RuleConfig]:
    """The defaults, with what an operator changed (intervention_rule rows) on top. A row
    whose stored values a rule cannot run with (kept from before they were checked) gives
    the rule a ``problem``: the pass skips that rule alone and reports it."""
    rules = dict(DEFAULT_RULES)
    for row in (await session.execute(select(InterventionRule))).scalars():
        base = rules.get(row.name)
        if base is None:
            continue
        stored = row.params if isinstance(row.params, dict) else {}
        problem = None
        try:
            params = check_params(row.name, {**base.params, **stored})
            if row.message:
                check_message(row.name, row.message)
        except RuleParamError as exc:
            problem = f"stored setting: {exc}"
            params = {**base.params, **_whole_numbers(stored, base.params)}
        rules[row.name] = replace(
            base,
            enabled=row.enabled,
            auto_send=row.auto_send,
            params=params,
            message=row.message or base.message,
            problem=problem,
        )
    return rules


def _whole_numbers(stored: dict[str, Any], known: dict[str, int]) -> dict[str, int]:
    """What an API listing can show of a bad row: its known keys with integer values."""
    return {
        k: v
        for k, v in stored.items()
        if k in known and isinstance(v, int) and not isinstance(v, bool)
    }


def check_rule_change(
    name: str,
    params: dict[str, Any] | None,
    message: str | None,
    current: dict[str, Any] | None = None,
) -> dict[str, int]:
    """The rule's parameters after the change (``current`` with ``params`` on top), or a
    ``RuleError`` naming the parameter and its allowed range."""
    if name not in DEFAULT_RULES:
        raise RuleError(f"no rule {name!r}; the rules are {', '.join(DEFAULT_RULES)}")
    known = PARAMS[name].model_fields
    for key in params or {}:
        if key not in known:
            raise RuleError(f"rule {name} has no parameter {key!r} ({', '.join(known)})")
    try:
        merged = check_params(name, {**(current or {}), **(params or {})})
        if message is not None:
            check_message(name, message)
    except RuleParamError as exc:
        raise RuleError(str(exc)) from None
    return merged


@dataclass
class Candidate:
    customer_id: int
    cause_key: str
    reason: str
    program_id: int | None = None
    context: dict[str, Any] = field(default_factory=dict)


def _live(customer_id: Any) -> Any:
    return exists().where(
        Customer.id == customer_id,
        Customer.merged_into_id.is_(None),  # type: ignore[union-attr]
        Customer.erased_at.is_(None),  # type: ignore[union-attr]
    )


def _fired(rule: str, customer_id: Any, cause: Any) -> Any:
    i = Intervention
    return exists().where(i.customer_id == customer_id, i.rule == rule, i.cause_key == cause)


def _cooling(rule: str, customer_id: Any, now: datetime, days: int) -> Any:
    i = Intervention
    return exists().where(
        i.customer_id == customer_id, i.rule == rule, i.created_at >= now - timedelta(days=days)
    )


def _active_enrollment(
    customer_id: Any, started: tuple[datetime | None, datetime] | None = None
) -> Any:
    """An active enrollment (started between the two times, when given)."""
    where = [Enrollment.customer_id == customer_id, Enrollment.status == "active"]
    if started is not None:
        if started[0] is not None:
            where.append(Enrollment.started_at >= started[0])  # type: ignore[arg-type]
        where.append(Enrollment.started_at < started[1])  # type: ignore[arg-type]
    return exists().where(*where)


def _among(session: AsyncSession, column: Any, ids: list[int] | None) -> Any:
    return among(session, column, ids) if ids is not None else literal(True)


def _key(prefix: str, column: Any) -> Any:
    return literal(prefix) + cast(column, String)


def of_type(kind: str) -> Any:
    """``activity_event.type = '<kind>'`` with the type as a literal in the SQL, so that
    SQLite and PostgreSQL can use the type's partial index (``PARTIAL_INDEX_TYPES``): a
    planner takes a partial index only where the query's text implies its condition."""
    assert kind in PARTIAL_INDEX_TYPES
    return ActivityEvent.type == literal_column(f"'{kind}'")


async def _rows(session: AsyncSession, stmt: Any) -> list[Any]:
    return list((await session.execute(stmt)).all())


async def find_inactive(
    session: AsyncSession, rule: RuleConfig, now: datetime, ids: list[int] | None
) -> list[Candidate]:
    """Quiet for ``days`` since their last course activity, or, never having started,
    since they enrolled."""
    s = CustomerScore
    cause = _key("activity:", func.coalesce(s.last_course_event_id, 0))
    newest, oldest = (
        now - timedelta(days=rule.params["days"]),
        now - timedelta(days=rule.params["max_days"]),
    )
    never_started = and_(
        s.last_course_activity_at.is_(None),  # type: ignore[union-attr]
        _active_enrollment(s.customer_id, started=(oldest, newest)),
    )
    lapsed = and_(
        s.last_course_activity_at < newest,  # type: ignore[operator]
        s.last_course_activity_at >= oldest,  # type: ignore[operator]
        _active_enrollment(s.customer_id),
    )
    stmt = select(s.customer_id, cause, s.last_course_activity_at).where(
        or_(lapsed, never_started),
        _among(session, s.customer_id, ids),
        ~_fired(rule.name, s.customer_id, cause),
        _live(s.customer_id),
    )
    return [
        Candidate(
            cid,
            key,
            Plural(
                "no course activity for %(num)s day (since %(since)s)",
                "no course activity for %(num)s days (since %(since)s)",
                (now - last).days,
                since=last.strftime("%Y-%m-%d"),
            )
            if last is not None
            else Plural(
                "enrolled over %(num)s day ago and not started yet",
                "enrolled over %(num)s days ago and not started yet",
                rule.params["days"],
            ),
        )
        for cid, key, last in await _rows(session, stmt)
    ]


async def find_low_engagement(
    session: AsyncSession, rule: RuleConfig, now: datetime, ids: list[int] | None
) -> list[Candidate]:
    """Low engagement, once past the first ``grace_days`` of an enrollment (a customer who
    bought this morning has no activity yet, and needs no rescue)."""
    s = CustomerScore
    cause = _key("activity:", func.coalesce(s.last_course_event_id, 0))
    settled = now - timedelta(days=rule.params["grace_days"])
    stmt = select(s.customer_id, cause, s.engagement).where(
        s.engagement < rule.params["below"],
        _among(session, s.customer_id, ids),
        _active_enrollment(s.customer_id, started=(None, settled)),
        ~_fired(rule.name, s.customer_id, cause),
        ~_cooling(rule.name, s.customer_id, now, rule.params["cooldown_days"]),
        _live(s.customer_id),
    )
    return [
        Candidate(
            cid,
            key,
            Text(
                "engagement score %(score)s is below %(below)s",
                score=score,
                below=rule.params["below"],
            ),
        )
        for cid, key, score in await _rows(session, stmt)
    ]


async def find_upsell(
    session: AsyncSession, rule: RuleConfig, now: datetime, ids: list[int] | None
) -> list[Candidate]:
    en, s = Enrollment, CustomerScore
    cause = _key("enrollment:", en.id)
    stmt = (
        select(en.customer_id, cause, en.program_id, s.engagement)
        .join(s, s.customer_id == en.customer_id)
        .where(
            en.status == "completed",
            en.completed_at >= now - timedelta(days=rule.params["within_days"]),  # type: ignore[operator]
            s.engagement >= rule.params["min_engagement"],
            _among(session, en.customer_id, ids),
            ~_fired(rule.name, en.customer_id, cause),
            _live(en.customer_id),
        )
    )
    return [
        Candidate(
            cid, key, Text("completed a program with engagement %(score)s", score=score), program_id
        )
        for cid, key, program_id, score in await _rows(session, stmt)
    ]


async def find_milestones(
    session: AsyncSession, rule: RuleConfig, now: datetime, ids: list[int] | None
) -> list[Candidate]:
    e = ActivityEvent
    since = now - timedelta(days=rule.params["within_days"])
    cause = _key("event:", e.id)
    stmt = select(e.customer_id, cause, e.ref, e.program_id).where(
        of_type("milestone_reported"),
        e.day >= day_number(since),
        e.occurred_at >= since,  # type: ignore[operator]
        _among(session, e.customer_id, ids),
        ~_fired(rule.name, e.customer_id, cause),
        _live(e.customer_id),
    )
    return [
        Candidate(
            cid,
            key,
            Text("reached a milestone: %(ref)s", ref=ref),
            program_id,
            {"milestone": ref},
        )
        for cid, key, ref, program_id in await _rows(session, stmt)
    ]


async def find_support_repeats(
    session: AsyncSession, rule: RuleConfig, now: datetime, ids: list[int] | None
) -> list[Candidate]:
    e = ActivityEvent
    since = now - timedelta(days=rule.params["within_days"])
    recent = (
        of_type("support_ticket"),
        e.status == "open",
        e.day >= day_number(since),
        e.occurred_at >= since,  # type: ignore[operator]
    )
    if ids is None:
        # Everyone: first who has enough recent tickets, from the tickets' partial index
        # (grouping in SQL, SQLite would rather walk every event in customer order to
        # skip the sort), then those customers as the event path asks for them.
        tickets = Counter((await session.execute(select(e.customer_id).where(*recent))).scalars())
        found: list[Candidate] = []
        repeat = sorted(cid for cid, n in tickets.items() if n >= rule.params["tickets"])
        for part in chunks(repeat):
            found.extend(await find_support_repeats(session, rule, now, list(part)))
        return found
    stmt = (
        select(e.customer_id, func.count(), func.max(e.id))
        .where(
            *recent,
            _among(session, e.customer_id, ids),
            ~_cooling(rule.name, e.customer_id, now, rule.params["cooldown_days"]),
            _live(e.customer_id),
        )
        .group_by(e.customer_id)
        .having(func.count() >= rule.params["tickets"])
    )
    return [
        Candidate(
            cid,
            f"ticket:{last}",
            Text(
                "%(n)s support tickets in %(days)s days",
                n=n,
                days=rule.params["within_days"],
            ),
        )
        for cid, n, last in await _rows(session, stmt)
    ]


FINDERS = {
    "inactivity_nudge": find_inactive,
    "low_engagement": find_low_engagement,
    "upsell": find_upsell,
    "milestone_celebration": find_milestones,
    "support_outreach": find_support_repeats,
}


def rule_rows(rules: dict[str, RuleConfig]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "title": r.title,
            "enabled": r.enabled,
            "auto_send": r.auto_send,
            "params": r.params,
            "message": r.message,
            "problem": r.problem,
            "limits": {k: list(v) for k, v in limits(r.name).items()},
        }
        for r in rules.values()
    ]
