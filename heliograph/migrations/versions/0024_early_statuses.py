"""Delivery statuses that came before their reply's provider id was written
(``inbox.models.EarlyStatus``): kept until the outbox writes the id, then applied.

Revision ID: 0024_early_statuses
Revises: 0023_translatable_texts
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0024_early_statuses"
down_revision: str | Sequence[str] | None = "0023_translatable_texts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_status",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("external_id", "channel", "status", name="uq_early_status"),
    )
    op.create_index("ix_early_status_received_at", "early_status", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_early_status_received_at", table_name="early_status")
    op.drop_table("early_status")
