"""Join the branches written in parallel (Slack agent threads, Telegram agents, activity
aggregates); index conversation.created_at and message.created_at, which the team's
numbers (`/hg stats`, the CEO's `/today` and `/pulse`) count by time range.

Revision ID: 0013
Revises: 0010_slack_agent_threads, 0011_telegram_agents, 0012_activity_aggregates
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = (
    "0010_slack_agent_threads",
    "0011_telegram_agents",
    "0012_activity_aggregates",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_conversation_created_at", "conversation", ["created_at"])
    op.create_index("ix_message_created_at", "message", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_message_created_at", table_name="message")
    op.drop_index("ix_conversation_created_at", table_name="conversation")
