"""Team members: YAML import, lookups, and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import pytz
import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import utcnow
from routing.models import AVAILABILITY, ROLES, WEEKDAYS, ApiToken, TeamMember

TOKEN_PREFIX = "hg_"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class TeamFileError(ValueError):
    """The team YAML is not valid; the message names the member and the field."""


class MemberNotFound(LookupError):
    pass


class MemberSpec(BaseModel):
    """One member in team.yaml (see README, "The team file")."""

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
    return specs


async def import_team(session: AsyncSession, team_yaml: str) -> tuple[int, int]:
    """Create or update members by email from team.yaml text. Returns ``(created, updated)``."""
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
        member.updated_at = utcnow()
    await session.flush()
    return created, updated


async def list_members(session: AsyncSession) -> list[TeamMember]:
    rows = await session.execute(select(TeamMember).order_by(TeamMember.id))
    return list(rows.scalars().all())


async def get_member(session: AsyncSession, member_id: int) -> TeamMember:
    member = await session.get(TeamMember, member_id)
    if member is None:
        raise MemberNotFound(f"team member {member_id} does not exist")
    return member


async def member_by_email(session: AsyncSession, email: str) -> TeamMember:
    member = (
        await session.execute(select(TeamMember).where(TeamMember.email == email.strip().lower()))
    ).scalar_one_or_none()
    if member is None:
        raise MemberNotFound(f"no team member with email {email}")
    return member


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(session: AsyncSession, email: str, label: str = "") -> str:
    """A new bearer token for the member; shown once, stored hashed."""
    member = await member_by_email(session, email)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(member_id=member.id, token_hash=_hash(token), label=label))  # type: ignore[arg-type]
    await session.flush()
    return token


async def authenticate(session: AsyncSession, token: str) -> TeamMember | None:
    row = (
        await session.execute(
            select(TeamMember)
            .join(ApiToken, ApiToken.member_id == TeamMember.id)  # type: ignore[arg-type]
            .where(
                ApiToken.token_hash == _hash(token),
                ApiToken.revoked_at.is_(None),  # type: ignore[union-attr]
                TeamMember.active.is_(True),  # type: ignore[attr-defined]
            )
        )
    ).scalar_one_or_none()
    return row
