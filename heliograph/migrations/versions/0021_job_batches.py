"""Jobs claimed by priority and kind, and a wake-up on commit (issue #17).

Revision ID: 0021_job_batches
Revises: 0020_path_times
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_job_batches"
down_revision: str | Sequence[str] | None = "0020_path_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every statement that inserts jobs NOTIFYs the workers of every process when its
# transaction commits (PostgreSQL folds identical notifications of one transaction).
WAKEUP_FUNCTION = """
CREATE OR REPLACE FUNCTION heliograph_job_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('heliograph_jobs', '');
    RETURN NULL;
END $$
"""
WAKEUP_TRIGGER = """
CREATE TRIGGER job_wakeup AFTER INSERT ON job
FOR EACH STATEMENT EXECUTE FUNCTION heliograph_job_wakeup()
"""


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="1"))
        batch.create_index("ix_job_next", ["status", "priority", "run_at"])
        batch.create_index("ix_job_kind_due", ["kind", "status", "run_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WAKEUP_FUNCTION)
        op.execute(WAKEUP_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS job_wakeup ON job")
        op.execute("DROP FUNCTION IF EXISTS heliograph_job_wakeup()")
    with op.batch_alter_table("job") as batch:
        batch.drop_index("ix_job_kind_due")
        batch.drop_index("ix_job_next")
        batch.drop_column("priority")
