"""Handoff records, and the per-(member, shift end) marks that keep shift-end handoffs single."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow

HANDOFF_KINDS = ("shift_end", "manual", "escalation")
HANDOFF_STATES = ("pending", "acknowledged", "escalated")


class Handoff(SQLModel, table=True):
    """One conversation handed from one member to another (``to_member_id`` None: it went
    back to the queue), with the context package the receiver reads first."""

    __tablename__ = "handoff"
    __table_args__ = (
        Index("ix_handoff_conversation", "conversation_id", "id"),
        Index("ix_handoff_state", "state", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    from_member_id: int | None = Field(default=None, foreign_key="team_member.id")
    to_member_id: int | None = Field(default=None, foreign_key="team_member.id")
    kind: str = Field(max_length=16)  # one of HANDOFF_KINDS
    reason: str = Field(sa_column=Column(Text, nullable=False))
    # The reason's template and parameters (heliograph.texts.dump), for the web app.
    reason_text: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="pending", max_length=16)  # one of HANDOFF_STATES
    created_at: datetime = Field(default_factory=utcnow)
    acknowledged_at: datetime | None = None
    escalated_at: datetime | None = None


class ShiftEndMark(SQLModel, table=True):
    """A member's shift end already handed off: the key that makes it happen once."""

    __tablename__ = "handoff_shift_end"

    member_id: int = Field(foreign_key="team_member.id", primary_key=True)
    shift_end: datetime = Field(primary_key=True)
    done_at: datetime = Field(default_factory=utcnow)
    handed: int = 0
