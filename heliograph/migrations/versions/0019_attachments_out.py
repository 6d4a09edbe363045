"""Attachments agents send (issue #16).

Revision ID: 0019_attachments_out
Revises: 0018_canned_responses
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_attachments_out"
down_revision: str | Sequence[str] | None = "0018_canned_responses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attachment") as batch:
        batch.add_column(
            sa.Column("direction", sa.String(length=4), nullable=False, server_default="in")
        )


def downgrade() -> None:
    with op.batch_alter_table("attachment") as batch:
        batch.drop_column("direction")
