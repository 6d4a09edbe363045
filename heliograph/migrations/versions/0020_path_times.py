"""Time stamps on the path of a message (issue #17).

Revision ID: 0020_path_times
Revises: 0019_attachments_out
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0020_path_times"
down_revision: str | Sequence[str] | None = "0019_attachments_out"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("received_at", "committed_at", "routed_at", "agent_notified_at", "accepted_at")


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
