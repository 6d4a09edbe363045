"""Telegram for the team: link codes, the bot's messages in members' chats, handled updates

Revision ID: 0011_telegram_agents
Revises: 0004
Create Date: 2026-12-01 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011_telegram_agents"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATETIME = sqlmodel.sql.sqltypes.UTCDateTime


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "telegram_link_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", _text(64), nullable=False),
        sa.Column("expires_at", _DATETIME(), nullable=False),
        sa.Column("used_at", _DATETIME(), nullable=True),
        sa.Column("used_by_chat", _text(64), nullable=True),
        sa.Column("created_at", _DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["team_member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    op.create_index("ix_telegram_link_code_member_id", "telegram_link_code", ["member_id"])
    op.create_table(
        "telegram_agent_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", _text(64), nullable=False),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("kind", _text(16), nullable=False),
        sa.Column("dedupe_key", _text(200), nullable=True),
        sa.Column("created_at", _DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["team_member.id"]),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chat_id", "telegram_message_id", name="uq_telegram_agent_message"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index(
        "ix_telegram_agent_message_conversation_id", "telegram_agent_message", ["conversation_id"]
    )
    op.create_index(
        "ix_telegram_agent_message_message_id", "telegram_agent_message", ["message_id"]
    )
    op.create_table(
        "telegram_agent_update",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", _text(64), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("command", _text(32), nullable=False),
        sa.Column("outcome", _text(500), nullable=False),
        sa.Column("created_at", _DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["team_member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chat_id", "message_id", name="uq_telegram_agent_update"),
    )
    op.create_index("ix_telegram_agent_update_member", "telegram_agent_update", ["member_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_telegram_agent_update_member", table_name="telegram_agent_update")
    op.drop_table("telegram_agent_update")
    op.drop_index("ix_telegram_agent_message_message_id", table_name="telegram_agent_message")
    op.drop_index("ix_telegram_agent_message_conversation_id", table_name="telegram_agent_message")
    op.drop_table("telegram_agent_message")
    op.drop_index("ix_telegram_link_code_member_id", table_name="telegram_link_code")
    op.drop_table("telegram_link_code")
