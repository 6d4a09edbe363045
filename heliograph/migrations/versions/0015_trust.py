"""Trust: token expiry, who answers customers, unverified mail senders, idempotent requests.

- api_token.expires_at: an optional end to a token's life (None: until revoked).
- team_member.answers_customers: whether the router may assign the member (None: the
  role decides).
- conversation.unverified_sender: mail whose SPF/DKIM/DMARC did not pass is kept apart.
- idempotency_record: the first answer to a request sent with an Idempotency-Key.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATETIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("expires_at", _DATETIME(), nullable=True))
    with op.batch_alter_table("team_member") as batch:
        batch.add_column(sa.Column("answers_customers", sa.Boolean(), nullable=True))
    with op.batch_alter_table("conversation") as batch:
        batch.add_column(
            sa.Column("unverified_sender", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _DATETIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),
    )
    op.create_index("ix_idempotency_record_customer_id", "idempotency_record", ["customer_id"])
    op.create_index("ix_idempotency_record_created_at", "idempotency_record", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_record")
    with op.batch_alter_table("conversation") as batch:
        batch.drop_column("unverified_sender")
    with op.batch_alter_table("team_member") as batch:
        batch.drop_column("answers_customers")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("expires_at")
