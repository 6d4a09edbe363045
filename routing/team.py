"""Team members: YAML import, lookups, access (active or not), and new API tokens."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

import pytz
import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import audit, jobs
from heliograph.db import utcnow
from heliograph.texts import Text
from routing.bus import RELEASE_MEMBER, ReleaseMember
from routing.models import AVAILABILITY, ROLES, WEEKDAYS, TeamMember
from routing.snapshot import recheck
from routing.tokens import authenticate as authenticate  # callers import it from here
from routing.tokens import issue_token

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class TeamFileError(ValueError):
    """The team YAML is not valid; the message names the member and the field."""


class MemberNotFound(LookupError):
    pass


class TeamImport(NamedTuple):
    """What ``import_team`` did."""

    created: int
    updated: int
    deactivated: int  # active members the file left out, now deactivated
    inactive: list[str]  # emails in the file whose member stays deactivated


class MemberSpec(BaseModel):
    """One member in team.yaml (see docs/cli.md, "The team file")."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    role: str = "agent"
    timezone: str = "UTC"
    region: str | None = None
    hours: dict[str, list[list[str]]] = Field(default_factory=dict)
    exceptions: list[dict[str, Any]] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    expertise: list[str] = Field(default_factory=list)
    capacity: int = Field(default=8, ge=0, le=1000)
    availability: str = "online"
    slack_user_id: str | None = None
    telegram_chat_id: str | None = None
    # Whether routing may give them conversations; absent: the role decides (agents yes,
    # leads as ``routing.leads_answer_customers`` says, exec and admin no).
    answers_customers: bool | None = None

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return value

    @field_validator("availability")
    @classmethod
    def _availability(cls, value: str) -> str:
        if value not in AVAILABILITY:
            raise ValueError(f"availability must be one of {', '.join(AVAILABILITY)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value not in pytz.all_timezones_set:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/London)")
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
        for day, periods in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(WEEKDAYS)}")
            for period in periods:
                if len(period) != 2 or not all(_HHMM.match(p) for p in period):
                    raise ValueError(f'{day}: a period is ["HH:MM", "HH:MM"], got {period!r}')
        return value

    @field_validator("languages", "expertise")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value if v.strip()]


class TeamRouting(BaseModel):
    """The team file's ``routing:`` section (see docs/cli.md, "The team file")."""

    model_config = ConfigDict(extra="forbid")

    # Leads take conversations like agents (each lead's own answers_customers still wins).
    leads_answer_customers: bool = False


def _apply_team_routing(data: dict[str, Any], specs: list[MemberSpec]) -> None:
    """Write the team's default for leads into each lead who does not say."""
    try:
        options = TeamRouting.model_validate(data.get("routing") or {})
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(["routing", *(str(p) for p in e["loc"])]) + f": {e['msg']}"
            for e in exc.errors()
        )
        raise TeamFileError(problems) from exc
    for spec in specs:
        if spec.role == "lead" and spec.answers_customers is None:
            spec.answers_customers = options.leads_answer_customers or None


def parse_team(text: str) -> list[MemberSpec]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TeamFileError(f"not valid YAML: {exc}") from exc
    members = data.get("members") if isinstance(data, dict) else None
    if not isinstance(members, list):
        raise TeamFileError("the file needs a top-level 'members:' list")
    specs: list[MemberSpec] = []
    for index, item in enumerate(members):
        try:
            specs.append(MemberSpec.model_validate(item))
        except ValidationError as exc:
            who = item.get("email") or item.get("name") if isinstance(item, dict) else index
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise TeamFileError(f"member #{index + 1} ({who}): {problems}") from exc
    first_seen: dict[str, int] = {}
    for index, spec in enumerate(specs):
        email = spec.email.lower()
        if email in first_seen:
            raise TeamFileError(
                f"member #{index + 1} ({spec.name}): email: {email} appears twice "
                f"(members #{first_seen[email] + 1} and #{index + 1})"
            )
        first_seen[email] = index
    _apply_team_routing(data, specs)
    return specs


async def import_team(
    session: AsyncSession, team_yaml: str, *, keep_missing: bool = False, actor: str = "import-team"
) -> TeamImport:
    """Create or update members by email from team.yaml text. The file is the team: an
    active member it leaves out is deactivated (``keep_missing``: left as they are). A
    listed member who was deactivated stays so: access comes back only by ``activate``."""
    specs = parse_team(team_yaml)
    created = updated = 0
    for spec in specs:
        email = spec.email.lower()
        member = (
            await session.execute(select(TeamMember).where(TeamMember.email == email))
        ).scalar_one_or_none()
        if member is None:
            member = TeamMember(name=spec.name, email=email)
            session.add(member)
            created += 1
        else:
            updated += 1
        member.name, member.role, member.timezone = spec.name, spec.role, spec.timezone
        member.region = spec.region
        member.weekly_hours, member.exceptions = spec.hours, spec.exceptions
        member.languages, member.expertise = spec.languages, spec.expertise
        member.capacity, member.availability = spec.capacity, spec.availability
        member.slack_user_id, member.telegram_chat_id = spec.slack_user_id, spec.telegram_chat_id
        member.answers_customers = spec.answers_customers
        member.updated_at = utcnow()
    await session.flush()
    listed = {spec.email.lower() for spec in specs}
    deactivated = 0 if keep_missing else await _deactivate_missing(session, listed, actor)
    return TeamImport(created, updated, deactivated, await _inactive_of(session, listed))


async def _deactivate_missing(session: AsyncSession, listed: set[str], actor: str) -> int:
    rows = await session.execute(select(TeamMember).where(TeamMember.active.is_(True)))  # type: ignore[attr-defined]
    missing = [m for m in rows.scalars().all() if m.email.lower() not in listed]
    for member in missing:
        await set_active(session, member, False, actor, reason="not in the team file")
    return len(missing)


async def _inactive_of(session: AsyncSession, listed: set[str]) -> list[str]:
    rows = await session.execute(
        select(TeamMember.email).where(TeamMember.active.is_(False), TeamMember.email.in_(listed))  # type: ignore[attr-defined, call-overload]
    )
    return sorted(rows.scalars().all())


async def set_active(
    session: AsyncSession, member: TeamMember, active: bool, actor: str, *, reason: str = ""
) -> bool:
    """Give a member access back, or take it away: a deactivated member's tokens, Slack
    and Telegram stop working at their next request (each checks ``active``), routing
    passes them over, and their open conversations go back to the queue
    (``routing.bus.RELEASE_MEMBER``). Audited. False when the member was so already
    (nothing written)."""
    if member.active == active:
        return False
    now = utcnow()
    member.active, member.updated_at = active, now  # updated_at: the team's version
    audit.record(
        session,
        actor=actor,
        action="member.activated" if active else "member.deactivated",
        subject_type="team_member",
        subject_id=member.id,
        details={"reason": reason} if reason else {},
        at=now,
    )
    if not active:
        await jobs.enqueue(session, RELEASE_MEMBER, ReleaseMember(member_id=member.id))
    await session.flush()
    recheck()
    return True


async def list_members(session: AsyncSession) -> list[TeamMember]:
    rows = await session.execute(select(TeamMember).order_by(TeamMember.id))
    return list(rows.scalars().all())


async def get_member(session: AsyncSession, member_id: int) -> TeamMember:
    member = await session.get(TeamMember, member_id)
    if member is None:
        raise MemberNotFound(Text("team member %(id)s does not exist", id=member_id))
    return member


async def member_by_email(session: AsyncSession, email: str) -> TeamMember:
    member = (
        await session.execute(select(TeamMember).where(TeamMember.email == email.strip().lower()))
    ).scalar_one_or_none()
    if member is None:
        raise MemberNotFound(f"no team member with email {email}")
    return member


async def create_token(
    session: AsyncSession,
    email: str,
    label: str = "",
    *,
    expires_in_days: int | None = None,
    actor: str = "cli",
) -> str:
    """A new bearer token for the member with this email; the secret (shown once)."""
    member = await member_by_email(session, email)
    _, secret = await issue_token(
        session, member, label, expires_in_days=expires_in_days, actor=actor
    )
    return secret


async def store_slack_id(session: AsyncSession, member_id: int, slack_user_id: str) -> None:
    """Keep the Slack user id found for a member on first use; one they have stays."""
    await session.execute(
        update(TeamMember)
        .where(TeamMember.id == member_id, TeamMember.slack_user_id.is_(None))  # type: ignore[arg-type, union-attr]
        .values(slack_user_id=slack_user_id, updated_at=utcnow())
    )


async def link_telegram_chat(
    session: AsyncSession, member: TeamMember, chat_id: str, now: datetime
) -> None:
    """Link ``chat_id`` to ``member``; a former member (inactive) who still held the chat
    lets go of it."""
    await session.execute(
        update(TeamMember)
        .where(TeamMember.telegram_chat_id == chat_id, TeamMember.id != member.id)  # type: ignore[arg-type]
        .values(telegram_chat_id=None)
    )
    member.telegram_chat_id, member.updated_at = chat_id, now
