"""TeamMember (who answers) and ApiToken (how they authenticate to the REST API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow

ROLES = ("agent", "lead", "admin", "exec")
AVAILABILITY = ("online", "away", "offline")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TeamMember(SQLModel, table=True):
    __tablename__ = "team_member"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=255, unique=True)
    role: str = Field(default="agent", max_length=16)
    timezone: str = Field(default="UTC", max_length=64)
    region: str | None = Field(default=None, max_length=64)
    # {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], ...} in the member's local time.
    weekly_hours: dict[str, list[list[str]]] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # [{"date": "2026-12-25", "off": true}, {"date": "...", "hours": [["10:00","14:00"]]}]
    exceptions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    languages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    expertise: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    capacity: int = 8
    availability: str = Field(default="online", max_length=16)
    slack_user_id: str | None = Field(default=None, max_length=64, unique=True)
    telegram_chat_id: str | None = Field(default=None, max_length=64, unique=True)
    active: bool = True
    last_assigned_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored (it is 256 random bits, so no KDF needed)."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="team_member.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
