"""Customer, Identity (channel + external id, unique) and ContactPoint (email/phone, unique);
programs, enrollments, activity events, journey changes, scores and interventions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Index, Numeric, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow

JOURNEY_STAGES = (
    "discovery",
    "exploration",
    "commitment",
    "engagement",
    "integration",
    "transformation",
    "advocacy",
)


class Customer(SQLModel, table=True):
    __tablename__ = "customer"

    id: int | None = Field(default=None, primary_key=True)
    display_name: str = Field(default="", max_length=200)
    # Lower-cased name, indexed, for prefix search with a plain b-tree range scan.
    search_name: str = Field(default="", max_length=200, index=True)
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=2)
    journey_stage: str = Field(default="discovery", max_length=32)
    lifetime_value: Decimal = Field(default=Decimal("0"), sa_column=Column(Numeric(12, 2)))
    vip: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    merged_into_id: int | None = Field(default=None, foreign_key="customer.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime | None = None
    # Communication preferences (crm_core.profile): where and when we may write first.
    preferred_channel: str | None = Field(default=None, max_length=32)
    quiet_hours_start: str | None = Field(default=None, max_length=5)  # "21:00", customer's zone
    quiet_hours_end: str | None = Field(default=None, max_length=5)
    interests: list[str] | None = Field(default_factory=list, sa_column=Column(JSON))
    erased_at: datetime | None = None  # GDPR erasure: the row stays, blanked


class Identity(SQLModel, table=True):
    """How a customer is known on one channel (Chatwoot's ContactInbox ``source_id``)."""

    __tablename__ = "identity"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_identity_channel"),
        # Search by any channel's id ("who is 4917...?") without knowing the channel.
        Index("ix_identity_external_id", "external_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=32)
    external_id: str = Field(max_length=255)
    display_name: str | None = Field(default=None, max_length=200)
    # Consent and reachability are per identity: STOP on SMS says nothing about email.
    opted_out: bool = False
    unreachable_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime | None = None


class ContactPoint(SQLModel, table=True):
    """An email address or phone number on a profile; unique, so a second channel finds it."""

    __tablename__ = "contact_point"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_contact_point"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    kind: str = Field(max_length=8)  # email, phone
    value: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)


# --- CRM: programs, activity, journey, scores, interventions ---------------------------------

PROGRAM_CATEGORIES = ("soul", "mind", "body", "relationships")
EVENT_TYPES = (
    "course_progress",
    "lesson_completed",
    "live_call_attended",
    "purchase",
    "refund",
    "community_post",
    "support_ticket",
    "milestone_reported",
    "referral",
)
# The event types whose recent events the trigger pass reads for everyone: each has a
# partial index on ``day`` (ActivityEvent).
PARTIAL_INDEX_TYPES = ("milestone_reported", "support_ticket")
ENROLLMENT_STATUSES = ("active", "completed", "refunded")
INTERVENTION_STATES = ("open", "done", "dismissed")


class Program(SQLModel, table=True):
    """Something a customer can enrol in (a course, a coaching programme, a membership)."""

    __tablename__ = "program"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)  # what activity events name it by
    name: str = Field(max_length=200)
    category: str = Field(max_length=16)  # one of PROGRAM_CATEGORIES
    price: Decimal = Field(default=Decimal("0"), sa_column=Column(Numeric(12, 2), nullable=False))
    currency: str = Field(default="USD", max_length=3)
    instructor: str = Field(default="", max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    level: int = 1  # order within its category: the upsell suggests the next level up
    next_program_id: int | None = Field(default=None, foreign_key="program.id")
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Enrollment(SQLModel, table=True):
    __tablename__ = "enrollment"
    __table_args__ = (
        UniqueConstraint("customer_id", "program_id", name="uq_enrollment"),
        Index("ix_enrollment_completed", "completed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    program_id: int = Field(foreign_key="program.id")
    status: str = Field(default="active", max_length=16)  # one of ENROLLMENT_STATUSES
    started_at: datetime = Field(default_factory=utcnow)
    purchased_at: datetime | None = None
    progress: int = 0  # percent
    last_activity_at: datetime | None = None
    completed_at: datetime | None = None
    # [{"name": "first 30-day streak", "at": "2026-..."}]
    milestones: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    satisfaction: int | None = None  # 1-5, the latest rating the platform reported
    updated_at: datetime = Field(default_factory=utcnow)


class ActivityEvent(SQLModel, table=True):
    """One thing a customer did on another platform, as POST /api/v1/events reported it.

    The typed columns (amount, status, ref, ...) are what scores and triggers aggregate
    in SQL; ``day`` (days since 1970-01-01 UTC) makes "active days" a portable
    ``count(DISTINCT day)`` on SQLite and PostgreSQL alike.
    """

    __tablename__ = "activity_event"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_activity_event_key"),
        # A customer's events by time: the timeline's pages, the export, and the
        # triggers' look at one customer's recent tickets and milestones.
        Index("ix_activity_event_customer", "customer_id", "occurred_at"),
        # The scheduler's pass over everyone's recent milestones and tickets: partial, so
        # the other 90% of events never touch them. Each batch of events adds entries at
        # random places of every index on this table, which was most of its cost
        # (migration 0014); the queries name the type as a literal (``triggers.of_type``).
        *(
            Index(
                f"ix_activity_event_{kind}_day",
                "day",
                sqlite_where=text(f"type = '{kind}'"),
                postgresql_where=text(f"type = '{kind}'"),
            )
            for kind in PARTIAL_INDEX_TYPES
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200)
    customer_id: int = Field(foreign_key="customer.id")
    type: str = Field(max_length=32)  # one of EVENT_TYPES
    occurred_at: datetime
    day: int
    program_id: int | None = Field(default=None, foreign_key="program.id")
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(12, 2)))
    currency: str | None = Field(default=None, max_length=3)
    progress: int | None = None
    status: str | None = Field(default=None, max_length=16)  # ticket open/closed, call missed
    ref: str | None = Field(default=None, max_length=200)  # lesson, ticket, milestone, referral
    satisfaction: int | None = None
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    received_at: datetime = Field(default_factory=utcnow)


class JourneyChange(SQLModel, table=True):
    """One step along JOURNEY_STAGES, and the event (and rule) that caused it."""

    __tablename__ = "journey_change"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    from_stage: str = Field(max_length=32)
    to_stage: str = Field(max_length=32)
    rule: str = Field(max_length=32)
    cause_event_id: int | None = Field(default=None, foreign_key="activity_event.id")
    at: datetime  # when the customer did it (the cause event's time)
    recorded_at: datetime = Field(default_factory=utcnow)


class CustomerScore(SQLModel, table=True):
    """A customer's scores, each beside the inputs that explain it, and activity marks the
    triggers read (one row per customer who has any activity)."""

    __tablename__ = "customer_score"

    customer_id: int = Field(foreign_key="customer.id", primary_key=True)
    engagement: int = 0
    engagement_inputs: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    health: int = 100
    health_inputs: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    progression: int = 0
    progression_inputs: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    ltv_inputs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    last_activity_at: datetime | None = None
    last_course_activity_at: datetime | None = None
    last_course_event_id: int | None = None
    computed_at: datetime = Field(default_factory=utcnow)
    # No index on the scores or timestamps: every batch of events rewrites these rows, and
    # their readers (the trigger pass, the nightly refresh) scan (migration 0014).
    # What the scores are computed from, kept up to date batch by batch, so a recompute
    # never re-reads a customer's history (crm_core.scores.Activity): counts per day for
    # the last ACTIVITY_DAYS days, the support tickets seen in them, purchases and
    # refunds. None: rebuilt from the customer's events at the next recompute.
    activity: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))


class Intervention(SQLModel, table=True):
    """A trigger rule fired for a customer: what happened, what to say, who should act.

    ``(customer_id, rule, cause_key)`` is unique, so the same cause never fires twice
    however many passes and events see it. ``owner_id`` is a team member id (no foreign
    key: crm_core stays below routing).
    """

    __tablename__ = "intervention"
    __table_args__ = (
        UniqueConstraint("customer_id", "rule", "cause_key", name="uq_intervention_cause"),
        Index("ix_intervention_state", "state", "id"),
        Index("ix_intervention_customer_rule", "customer_id", "rule", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    rule: str = Field(max_length=32)
    cause_key: str = Field(max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    # The reason's template and parameters (heliograph.texts.dump), for the web app.
    reason_text: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    suggested_message: str = Field(sa_column=Column(Text, nullable=False))
    suggested_program_id: int | None = Field(default=None, foreign_key="program.id")
    state: str = Field(default="open", max_length=16)  # one of INTERVENTION_STATES
    owner_id: int | None = Field(default=None, index=True)
    auto_send: bool = False
    send_status: str | None = Field(default=None, max_length=16)  # scheduled, sent, skipped
    send_after: datetime | None = None
    send_note: str | None = Field(default=None, max_length=300)
    sent_message_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
    resolved_by: str | None = Field(default=None, max_length=200)


class InterventionRule(SQLModel, table=True):
    """An operator's settings for one trigger rule; a rule without a row uses its defaults."""

    __tablename__ = "intervention_rule"

    name: str = Field(max_length=32, primary_key=True)
    enabled: bool = True
    auto_send: bool = False
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    message: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=200)
