"""handoff: handoff records and the shift-end marks that keep them single

Revision ID: 0003_handoff
Revises: 0002
Create Date: 2026-11-24 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003_handoff"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handoff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("from_member_id", sa.Integer(), nullable=True),
        sa.Column("to_member_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("escalated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"]),
        sa.ForeignKeyConstraint(["from_member_id"], ["team_member.id"]),
        sa.ForeignKeyConstraint(["to_member_id"], ["team_member.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_handoff_conversation", "handoff", ["conversation_id", "id"], unique=False)
    op.create_index("ix_handoff_state", "handoff", ["state", "created_at"], unique=False)
    op.create_table(
        "handoff_shift_end",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("shift_end", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("handed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["team_member.id"]),
        sa.PrimaryKeyConstraint("member_id", "shift_end"),
    )


def downgrade() -> None:
    op.drop_table("handoff_shift_end")
    op.drop_index("ix_handoff_state", table_name="handoff")
    op.drop_index("ix_handoff_conversation", table_name="handoff")
    op.drop_table("handoff")
