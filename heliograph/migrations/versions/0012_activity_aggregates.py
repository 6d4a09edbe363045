"""customer_score.activity: the per-customer aggregates scores are computed from

Revision ID: 0012_activity_aggregates
Revises: 0004

Nullable, and left NULL on existing rows: a score row without it is rebuilt from the
customer's activity events at its next recompute (the next event, or the nightly pass).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_activity_aggregates"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_score", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activity", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_score", schema=None) as batch_op:
        batch_op.drop_column("activity")
