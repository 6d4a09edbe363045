"""slack agent threads: a conversation's parent message in Slack, what was posted there,
and the agent messages acted on

Revision ID: 0010_slack_agent_threads
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010_slack_agent_threads"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_when = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "slack_agent_thread",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("channel", _str(length=32), nullable=False),
        sa.Column("ts", _str(length=32), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("mirrored_to", sa.Integer(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["team_member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_id", "channel", name="uq_slack_agent_thread"),
    )
    op.create_index(
        "ix_slack_agent_thread_conversation_id", "slack_agent_thread", ["conversation_id"]
    )
    op.create_index("ix_slack_agent_thread_ts", "slack_agent_thread", ["channel", "ts"])
    op.create_table(
        "slack_agent_post",
        sa.Column("key", _str(length=120), nullable=False),
        sa.Column("channel", _str(length=32), nullable=False),
        sa.Column("thread_ts", _str(length=32), nullable=True),
        sa.Column("ts", _str(length=32), nullable=True),
        sa.Column("state", _str(length=16), nullable=False),
        sa.Column("lease_until", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "slack_agent_event",
        sa.Column("key", _str(length=80), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("kind", _str(length=16), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("note_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["team_member.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.ForeignKeyConstraint(["note_id"], ["note.id"]),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_slack_agent_event_message_id", "slack_agent_event", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_slack_agent_event_message_id", table_name="slack_agent_event")
    op.drop_table("slack_agent_event")
    op.drop_table("slack_agent_post")
    op.drop_index("ix_slack_agent_thread_ts", table_name="slack_agent_thread")
    op.drop_index("ix_slack_agent_thread_conversation_id", table_name="slack_agent_thread")
    op.drop_table("slack_agent_thread")
