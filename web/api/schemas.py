"""Request and response bodies of REST API v1."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from heliograph.bounds import DbId, UtcDatetime, check_text


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class In(BaseModel):
    """A request body: unknown fields refused, and no text that holds NUL. The HTTP
    boundary (web/boundary.py) refuses NUL before any model; this guards every other way
    a model is fed (a test, a CLI, a future route outside the middleware)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        check_text(value)
        return value


class Patch(In):
    """A partial update: a field left out keeps its value, so an explicit ``null`` is only
    taken for the fields in ``nullable`` (those whose column may be empty); for any other
    it is a 422 on that field, not a NULL that the database refuses (a 500)."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


class IdentityOut(Out):
    channel: str
    external_id: str
    opted_out: bool
    unreachable_reason: str | None


class ContactOut(Out):
    kind: str
    value: str


class ContactIn(In):
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


class MergeIn(In):
    source_id: DbId = Field(description="The customer folded into this one; it stops existing.")


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
    # Mail whose sender did not authenticate (SPF/DKIM/DMARC): kept apart from the profile
    # of the address it claims; its notes say what failed (channels/email/unverified.py).
    unverified_sender: bool = False
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


class TextIn(In):
    text: str = Field(min_length=1, max_length=65_536)


class FileIn(In):
    """An attachment in a JSON reply: the file's bytes in base64."""

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=1, max_length=100)
    data_base64: str = Field(min_length=1)


class ReplyIn(In):
    """A reply: ``text``, and optionally ``attachments`` (then ``text`` may be empty)."""

    text: str = Field(default="", max_length=65_536)
    attachments: list[FileIn] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _text_or_file(self) -> ReplyIn:
        if not self.attachments and not self.text:
            raise ValueError("a reply needs some text or an attachment")
        return self


class SnoozeIn(In):
    until: UtcDatetime = Field(description="ISO-8601; naive times are UTC.")


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
    active: bool = Field(description="false: deactivated; their tokens and chats are refused")


class JobOut(Out):
    id: int
    kind: str
    payload: dict[str, object]
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
