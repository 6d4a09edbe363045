"""Conversation -> Message (+ Attachment) and private Note; the delivery statuses that came
before their reply's provider id was written (``EarlyStatus``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow

STATUSES = ("open", "pending", "snoozed", "resolved")
PRIORITIES = ("low", "normal", "high", "urgent")
DELIVERY_DONE = ("sent", "delivered", "read")


class Conversation(SQLModel, table=True):
    __tablename__ = "conversation"
    __table_args__ = (
        # At most one unresolved conversation per customer, channel and thread: two first
        # messages racing cannot open two (the loser retries and joins the winner's).
        Index(
            "uq_conversation_active",
            "customer_id",
            "channel",
            "thread_key",
            unique=True,
            sqlite_where=text("status <> 'resolved'"),
            postgresql_where=text("status <> 'resolved'"),
        ),
        Index("ix_conversation_status", "status", "last_message_at"),
        # Routing's reads: an agent's open load, all loads, and the unassigned queue. On
        # assignee_id alone so that SQLite's planner prefers it to ix_conversation_assignee_id
        # (with a second column it did not, and counted through the table).
        Index(
            "ix_conversation_open_assignee",
            "assignee_id",
            sqlite_where=text("status <> 'resolved'"),
            postgresql_where=text("status <> 'resolved'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    identity_id: int | None = Field(default=None, foreign_key="identity.id")  # who we reply to
    channel: str = Field(max_length=32, index=True)
    thread_key: str = Field(default="", max_length=255)
    status: str = Field(default="open", max_length=16)
    priority: str = Field(default="normal", max_length=16)
    assignee_id: int | None = Field(default=None, foreign_key="team_member.id", index=True)
    assigned_at: datetime | None = None  # when the current assignee got it
    language: str | None = Field(default=None, max_length=16)
    # Who set ``language``: "customer" (their profile), "detected" or "agent" (corrected;
    # detection no longer changes it).
    language_source: str | None = Field(default=None, max_length=16)
    topic_tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str | None = Field(default=None, max_length=300)
    translation_enabled: bool = True
    # Mail whose SPF/DKIM/DMARC did not pass: kept apart from the profile it claims to be
    # from until an agent merges it (channels/email).
    unverified_sender: bool = False
    snoozed_until: datetime | None = None
    waiting_since: datetime | None = None  # oldest customer message not yet answered
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    last_message_at: datetime = Field(default_factory=utcnow)
    # Indexed (migration 0013): the team's numbers count conversations by time range.
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        # The dedupe key of every inbound message: a replay is a no-op, not an error.
        UniqueConstraint("channel", "provider_message_id", name="uq_message_provider_id"),
        Index("ix_message_conversation", "conversation_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=32)
    direction: str = Field(max_length=8)  # in, out
    author_type: str = Field(max_length=16)  # customer, agent, system
    author_id: int | None = Field(default=None, foreign_key="team_member.id")
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    original_text: str | None = Field(default=None, sa_column=Column(Text))
    original_language: str | None = Field(default=None, max_length=16)
    # inbox/translation.py: None (not looked at), pending (a reply waits for it), done
    # (``text`` is the translation of ``original_text``), not_needed, off, failed, timed_out.
    translation_status: str | None = Field(default=None, max_length=16)
    translation_note: str | None = Field(default=None, max_length=500)  # why, in words
    provider_message_id: str | None = Field(default=None, max_length=255)  # inbound dedupe key
    external_id: str | None = Field(default=None, max_length=255, index=True)  # provider id out
    delivery_status: str = Field(default="received", max_length=16)
    delivery_error: str | None = Field(default=None, max_length=500)
    sent_at: datetime | None = None  # the provider's timestamp for inbound
    edited_at: datetime | None = None
    raw: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # An outgoing reply's ``created_at`` is when it was queued (written with its outbox job).
    created_at: datetime = Field(default_factory=utcnow, index=True)  # counted by range
    # Time stamps on the path (issue #17, migration 0020; docs/operations.md). Inbound:
    received_at: datetime | None = None  # the request carrying it reached inbox.intake
    committed_at: datetime | None = None  # the group commit wrote it, just before COMMIT
    routed_at: datetime | None = None  # the routing job for it decided (assigned or queued)
    agent_notified_at: datetime | None = None  # an agent's surface accepted the post of it
    # Outbound: the provider accepted the reply (the sender returned).
    accepted_at: datetime | None = None


class EarlyStatus(SQLModel, table=True):
    """A provider's status callback that named none of our replies when it came: a fast
    provider calls back before the outbox has written the id it gave the reply
    (``message.external_id``). Kept until the outbox writes that id, and then applied to
    the reply and deleted (``inbox.outbox``); one that never finds its reply (a message
    that was not ours) is deleted after ``inbox.outbox.EARLY_STATUS_KEPT``."""

    __tablename__ = "early_status"
    __table_args__ = (
        # One row per callback: a provider's retry of the same callback is a no-op. First
        # the id, so that the outbox's lookup by the ids it writes is an index seek.
        UniqueConstraint("external_id", "channel", "status", name="uq_early_status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    external_id: str = Field(max_length=255)  # the provider's id of the message it names
    status: str = Field(max_length=16)  # sent, delivered, read, failed
    error: str | None = Field(default=None, max_length=500)
    received_at: datetime = Field(default_factory=utcnow, index=True)  # purged by age


class Attachment(SQLModel, table=True):
    __tablename__ = "attachment"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    # "in": the customer sent it (fetched from the provider); "out": an agent sent it (#16).
    direction: str = Field(default="in", max_length=4, sa_column_kwargs={"server_default": "in"})
    kind: str = Field(max_length=16)  # image, audio, video, file
    content_type: str | None = Field(default=None, max_length=100)
    filename: str | None = Field(default=None, max_length=255)
    size: int | None = None
    url: str | None = Field(default=None, max_length=2000)
    provider_file_id: str | None = Field(default=None, max_length=255)
    storage_path: str | None = Field(default=None, max_length=500)
    transcript: str | None = Field(default=None, sa_column=Column(Text))
    transcript_language: str | None = Field(default=None, max_length=16)
    transcript_status: str | None = Field(default=None, max_length=16)
    # inbox/voice.py: the reason for failed/empty/unavailable, or how the language was chosen.
    transcript_note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class Note(SQLModel, table=True):
    """A private note: agents see it, customers never do."""

    __tablename__ = "note"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    author_id: int | None = Field(default=None, foreign_key="team_member.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class CannedResponse(SQLModel, table=True):
    """A saved reply (issue #16): team-wide (``owner_member_id`` None) or one member's own."""

    __tablename__ = "canned_response"
    __table_args__ = (
        # Unique per owner scope; team-wide rows (owner NULL) are kept unique by the service.
        UniqueConstraint("owner_member_id", "shortcut", name="uq_canned_owner_shortcut"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shortcut: str = Field(max_length=64, index=True)
    title: str = Field(max_length=200)
    text: str = Field(sa_column=Column(Text, nullable=False))
    language: str | None = Field(default=None, max_length=16)  # None: any language
    owner_member_id: int | None = Field(default=None, foreign_key="team_member.id", index=True)
    created_by: int | None = Field(default=None, foreign_key="team_member.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
