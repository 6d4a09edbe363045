"""Where each conversation lives in Slack for the team, and what was posted there.

``SlackAgentThread``: a conversation's parent message (the customer card) in a Slack
channel, found again by ``(channel, ts)`` when an agent answers in its thread.
``SlackAgentPost``: each thing Heliograph posts there, by a key of ours, with the ``ts``
Slack gave it; a post whose answer was lost is looked up by that key (message metadata)
instead of being posted twice. ``SlackAgentEvent``: each agent message acted on (reply or
note), by Slack's ``channel:ts``, so a retried event does nothing the second time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow


class SlackAgentThread(SQLModel, table=True):
    __tablename__ = "slack_agent_thread"
    __table_args__ = (
        UniqueConstraint("conversation_id", "channel", name="uq_slack_agent_thread"),
        Index("ix_slack_agent_thread_ts", "channel", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    channel: str = Field(max_length=32)  # the inbox channel, or the agent's DM (D...)
    ts: str | None = Field(default=None, max_length=32)  # the parent, once Slack has it
    member_id: int | None = Field(default=None, foreign_key="team_member.id")
    # Messages up to this id are in the thread (or were before it began).
    mirrored_to: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SlackAgentPost(SQLModel, table=True):
    __tablename__ = "slack_agent_post"

    key: str = Field(primary_key=True, max_length=120)  # e.g. "mirror:3:41"
    channel: str = Field(max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)
    # "sending" while one worker holds it (until lease_until), "unknown" after a failed try
    # (Slack may or may not have it), "posted" with its ts.
    state: str = Field(default="sending", max_length=16)
    lease_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class SlackAgentEvent(SQLModel, table=True):
    __tablename__ = "slack_agent_event"

    key: str = Field(primary_key=True, max_length=80)  # Slack's "channel:ts"
    conversation_id: int = Field(foreign_key="conversation.id")
    member_id: int = Field(foreign_key="team_member.id")
    kind: str = Field(max_length=16)  # reply, note
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)
    note_id: int | None = Field(default=None, foreign_key="note.id")
    created_at: datetime = Field(default_factory=utcnow)
