"""Canned responses (issue #16).

Revision ID: 0018_canned_responses
Revises: 0017_sign_in
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0018_canned_responses"
down_revision: str | Sequence[str] | None = "0017_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "canned_response",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("shortcut", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("owner_member_id", sa.Integer(), sa.ForeignKey("team_member.id"), nullable=True),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("team_member.id"), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("owner_member_id", "shortcut", name="uq_canned_owner_shortcut"),
    )
    op.create_index("ix_canned_response_shortcut", "canned_response", ["shortcut"])
    op.create_index("ix_canned_response_owner_member_id", "canned_response", ["owner_member_id"])


def downgrade() -> None:
    op.drop_index("ix_canned_response_owner_member_id", table_name="canned_response")
    op.drop_index("ix_canned_response_shortcut", table_name="canned_response")
    op.drop_table("canned_response")
