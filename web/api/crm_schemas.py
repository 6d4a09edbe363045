"""Request and response bodies of the CRM part of REST API v1 (web/api/crm.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from heliograph.bounds import DbId
from web.api.schemas import ContactOut, CustomerOut, IdentityOut, In, Out, Patch


class EventsResult(BaseModel):
    accepted: int = Field(description="Events stored now.")
    duplicates: int = Field(description="Events whose idempotency key was seen before.")
    errors: list[dict[str, Any]] = Field(description='[{"index": n, "error": "..."}]')


class ProgramIn(In):
    code: str = Field(min_length=1, max_length=64, description="What events name it by.")
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(description="soul, mind, body or relationships")
    price: Decimal = Field(Decimal("0"), ge=0, max_digits=12, decimal_places=2)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    instructor: str = Field("", max_length=200)
    description: str = Field("", max_length=10_000)
    level: int = Field(1, ge=1, le=100)
    next_program_id: DbId | None = None
    active: bool = True


class ProgramPatch(Patch):
    nullable = frozenset({"next_program_id"})
    name: str | None = Field(None, min_length=1, max_length=200)
    category: str | None = None
    price: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    instructor: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    level: int | None = Field(None, ge=1, le=100)
    next_program_id: DbId | None = None
    active: bool | None = None


class ProgramOut(Out):
    id: int
    code: str
    name: str
    category: str
    price: Decimal
    currency: str
    instructor: str
    description: str
    level: int
    next_program_id: int | None
    active: bool


class EnrollmentOut(Out):
    id: int
    program_id: int
    status: str
    started_at: datetime
    purchased_at: datetime | None
    progress: int
    last_activity_at: datetime | None
    completed_at: datetime | None
    milestones: list[dict[str, Any]]
    satisfaction: int | None


class ProgramEnrollment(BaseModel):
    enrollment: EnrollmentOut
    program: ProgramOut | None


class JourneyChangeOut(Out):
    from_stage: str
    to_stage: str
    rule: str
    cause_event_id: int | None
    at: datetime


class ScoresOut(Out):
    engagement: int
    engagement_inputs: dict[str, Any]
    health: int
    health_inputs: dict[str, Any]
    progression: int
    progression_inputs: dict[str, Any]
    ltv_inputs: dict[str, Any]
    last_activity_at: datetime | None
    computed_at: datetime


class InterventionOut(Out):
    id: int
    customer_id: int
    rule: str
    cause_key: str
    reason: str
    suggested_message: str
    suggested_program_id: int | None
    state: str
    owner_id: int | None
    auto_send: bool
    send_status: str | None
    send_after: datetime | None
    send_note: str | None
    sent_message_id: int | None
    details: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class CustomerFull(CustomerOut):
    preferred_channel: str | None
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    erased_at: datetime | None


class ProfileOut(BaseModel):
    customer: CustomerFull
    preferences: dict[str, Any]
    interests: list[str]
    identities: list[IdentityOut]
    contacts: list[ContactOut]
    enrollments: list[ProgramEnrollment]
    journey: list[JourneyChangeOut]
    scores: ScoresOut | None
    open_interventions: list[InterventionOut]


class ProfilePatch(Patch):
    nullable = frozenset(
        {"language", "timezone", "country", "preferred_channel", "quiet_hours_start",
         "quiet_hours_end", "interests"}
    )  # fmt: skip
    display_name: str | None = Field(None, max_length=200)
    language: str | None = Field(None, max_length=16)
    timezone: str | None = Field(None, max_length=64, description="IANA, e.g. Asia/Tokyo")
    country: str | None = Field(None, description="ISO 3166 alpha-2")
    preferred_channel: str | None = Field(None, description="email, sms, whatsapp, ...")
    quiet_hours_start: str | None = Field(None, description="HH:MM in the customer's zone")
    quiet_hours_end: str | None = Field(None, description="HH:MM in the customer's zone")
    interests: list[str] | None = Field(None, max_length=50)
    vip: bool | None = None


class RuleOut(BaseModel):
    name: str
    title: str
    enabled: bool
    auto_send: bool
    params: dict[str, int]
    message: str
    problem: str | None = Field(
        None, description="Why the pass skips this rule (a stored setting it cannot use)."
    )
    limits: dict[str, list[int]] = Field(
        default_factory=dict, description="Each parameter's allowed range, [min, max]."
    )


class RulePatch(Patch):
    enabled: bool | None = None
    auto_send: bool | None = None
    params: dict[str, int] | None = None
    message: str | None = Field(None, max_length=2000)


class PassOut(BaseModel):
    created: int
    by_rule: dict[str, int]


class ErasureOut(BaseModel):
    customer_id: int
    rows: dict[str, int] = Field(description="Rows deleted or redacted, per table.")
