"""Sign-in to the web app: passwords, invites (issue #16).

Revision ID: 0017_sign_in
Revises: 0016_job_request_id
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017_sign_in"
down_revision: str | Sequence[str] | None = "0016_job_request_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("team_member") as batch:
        batch.add_column(sa.Column("ui_language", _STR(length=8), nullable=True))
        batch.add_column(
            sa.Column("ui_theme", _STR(length=8), nullable=False, server_default="system")
        )
        batch.add_column(sa.Column("password_hash", _STR(length=255), nullable=True))
        batch.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "member_invite",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("team_member.id"), nullable=False),
        sa.Column("token_hash", _STR(length=64), nullable=False, unique=True),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("team_member.id"), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("used_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    op.create_index("ix_member_invite_member_id", "member_invite", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_member_invite_member_id", table_name="member_invite")
    op.drop_table("member_invite")
    with op.batch_alter_table("team_member") as batch:
        batch.drop_column("session_version")
        batch.drop_column("password_hash")
        batch.drop_column("ui_theme")
        batch.drop_column("ui_language")
