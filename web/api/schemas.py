"""Request and response bodies of REST API v1."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IdentityOut(Out):
    channel: str
    external_id: str
    opted_out: bool
    unreachable_reason: str | None


class ContactOut(Out):
    kind: str
    value: str


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["email", "phone"]
    value: str = Field(min_length=3, max_length=255, description="any common format")


class CustomerOut(Out):
    id: int
    display_name: str
    language: str | None
    timezone: str | None
    country: str | None
    journey_stage: str
    lifetime_value: Decimal
    vip: bool
    created_at: datetime
    last_seen_at: datetime | None


class CustomerDetail(CustomerOut):
    identities: list[IdentityOut]
    contacts: list[ContactOut]


class MergeIn(BaseModel):
    source_id: int = Field(description="The customer folded into this one; it stops existing.")


class TimelineOut(BaseModel):
    at: datetime
    kind: str
    conversation_id: int | None
    summary: str
    data: dict[str, object]


class TimelinePage(BaseModel):
    entries: list[TimelineOut]
    next_before: datetime | None = Field(description="Pass as ?before= for the next page.")


class ConversationOut(Out):
    id: int
    customer_id: int
    channel: str
    status: str
    priority: str
    assignee_id: int | None
    language: str | None
    language_source: str | None = None
    translation_enabled: bool = True
    topic_tags: list[str]
    subject: str | None
    snoozed_until: datetime | None
    waiting_since: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    last_message_at: datetime
    created_at: datetime


class AttachmentOut(Out):
    id: int
    kind: str
    content_type: str | None
    filename: str | None
    size: int | None
    transcript: str | None
    transcript_language: str | None
    transcript_status: str | None = None
    transcript_note: str | None = None


class MessageOut(Out):
    id: int
    direction: str
    author_type: str
    author_id: int | None
    text: str
    original_text: str | None
    original_language: str | None
    translation_status: str | None = None
    translation_note: str | None = None
    delivery_status: str
    delivery_error: str | None
    created_at: datetime
    sent_at: datetime | None
    edited_at: datetime | None
    attachments: list[AttachmentOut] = []


class NoteOut(Out):
    id: int
    author_id: int | None
    text: str
    created_at: datetime


class ConversationDetail(ConversationOut):
    customer: CustomerOut
    messages: list[MessageOut]
    notes: list[NoteOut]


class TextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=65_536)


class SnoozeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: datetime = Field(description="ISO-8601; naive times are UTC.")


class TeamMemberOut(Out):
    id: int
    name: str
    email: str
    role: str
    timezone: str
    region: str | None
    weekly_hours: dict[str, list[list[str]]]
    languages: list[str]
    expertise: list[str]
    capacity: int
    availability: str
    slack_user_id: str | None
    telegram_chat_id: str | None


class JobOut(Out):
    id: int
    kind: str
    payload: dict[str, object]
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
