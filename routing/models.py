"""TeamMember (who answers) and ApiToken (how they authenticate to the REST API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
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
    # Whether the router may give this member conversations. None: their role decides
    # (agents yes; leads as the team file's ``routing.leads_answer_customers`` says;
    # exec and admin no). See routing.policy.answers_customers.
    answers_customers: bool | None = None
    last_assigned_at: datetime | None = None
    # Any sign of life from the member (a claim, an availability change, a surface's touch).
    last_active_at: datetime | None = None
    # True when the inactivity rule set the availability (it lifts when they act again).
    availability_auto: bool = False
    # The web app (issue #16): interface language, theme, and the Argon2 password hash.
    # ``session_version`` grows with a password change or a deactivation: it ends every
    # web session signed in before (web.ui.session checks it on each request).
    ui_language: str | None = Field(default=None, max_length=8)
    ui_theme: str = Field(default="system", max_length=8)
    password_hash: str | None = Field(default=None, max_length=255)
    session_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    # Indexed: routing reads count(*) and max(updated_at) as the team's version each decision.
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class ApiToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored (it is 256 random bits, so no KDF needed)."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="team_member.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    expires_at: datetime | None = None  # None: until revoked
    revoked_at: datetime | None = None


class MemberInvite(SQLModel, table=True):
    """A sign-up link an admin made: only the SHA-256 of its token is stored; used once,
    it expires after 7 days."""

    __tablename__ = "member_invite"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="team_member.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_by: int | None = Field(default=None, foreign_key="team_member.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


ASSIGNMENT_KINDS = ("policy", "reroute", "manual", "claim", "queued", "handoff")


class Assignment(SQLModel, table=True):
    """One change of a conversation's owner, and why: the history handoffs build on.

    ``member_id`` None means the conversation went back to the queue. ``customer_id`` is
    copied so "the customer's previous agent" is one indexed read of this table.
    """

    __tablename__ = "assignment"
    __table_args__ = (
        Index("ix_assignment_conversation", "conversation_id", "id"),
        Index("ix_assignment_customer", "customer_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    customer_id: int = Field(foreign_key="customer.id")
    member_id: int | None = Field(default=None, foreign_key="team_member.id")
    previous_member_id: int | None = Field(default=None, foreign_key="team_member.id")
    kind: str = Field(max_length=16)  # one of ASSIGNMENT_KINDS
    by_member_id: int | None = Field(default=None, foreign_key="team_member.id")  # a person
    reason: str = Field(sa_column=Column(Text, nullable=False))
    # The reason's template and parameters (heliograph.texts.dump): the web app shows it in
    # the viewer's language; None (an older row): the English ``reason``.
    reason_text: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    at: datetime = Field(default_factory=utcnow)


class RoutingWait(SQLModel, table=True):
    """A conversation waiting for someone eligible, and what the customer was promised.

    The queue itself is every unassigned open conversation (inbox.assignment.queued);
    this row only remembers, per wait, why nobody took it and whether we told the
    customer when we will answer (at most once per wait).
    """

    __tablename__ = "routing_wait"

    conversation_id: int = Field(foreign_key="conversation.id", primary_key=True)
    since: datetime = Field(default_factory=utcnow)
    reason: str = Field(default="", max_length=500)
    promised_at: datetime | None = None
    notified_at: datetime | None = None
