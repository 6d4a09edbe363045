"""What the Telegram surface for the team remembers.

- ``TelegramLinkCode``: the one-time code a member gets from the web or API and sends to
  the bot as ``/link CODE``; only its SHA-256 is kept, it works once and for 15 minutes.
- ``TelegramAgentMessage``: every message the bot sent into a member's chat, by
  ``(chat_id, telegram_message_id)``, with the conversation it is about, so a Telegram
  reply-to finds the conversation. ``dedupe_key`` is the send job's key: a send job that
  runs again after it went out finds its row and sends nothing.
- ``TelegramAgentUpdate``: every update from a member's chat (or an unlinked chat's
  command) that was handled, by ``(chat_id, message_id)``: a replay does nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow


class TelegramLinkCode(SQLModel, table=True):
    __tablename__ = "telegram_link_code"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="team_member.id", index=True)
    code_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime
    used_at: datetime | None = None
    used_by_chat: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class TelegramAgentMessage(SQLModel, table=True):
    __tablename__ = "telegram_agent_message"
    __table_args__ = (
        UniqueConstraint("chat_id", "telegram_message_id", name="uq_telegram_agent_message"),
    )

    id: int | None = Field(default=None, primary_key=True)
    chat_id: str = Field(max_length=64)
    # Telegram numbers messages per chat; ids of one chat stay below 2**31 but a BigInteger
    # costs nothing and never overflows.
    telegram_message_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    member_id: int | None = Field(default=None, foreign_key="team_member.id")
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id", index=True)
    kind: str = Field(max_length=16)  # customer, reply, handoff, alert, answer, agent
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class TelegramAgentUpdate(SQLModel, table=True):
    __tablename__ = "telegram_agent_update"
    __table_args__ = (
        UniqueConstraint("chat_id", "message_id", name="uq_telegram_agent_update"),
        Index("ix_telegram_agent_update_member", "member_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    chat_id: str = Field(max_length=64)
    message_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    update_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    member_id: int | None = Field(default=None, foreign_key="team_member.id")
    command: str = Field(max_length=32)  # /claim, reply, /link, refused:/pulse, ...
    outcome: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
