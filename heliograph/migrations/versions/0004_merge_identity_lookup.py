"""Join the branches written in parallel (CRM, voice and language, handoff); index
identity.external_id so a lookup by any channel's id is an index seek, not a scan.

Revision ID: 0004
Revises: 0003_crm, 0003_voice_language, 0003_handoff
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = ("0003_crm", "0003_voice_language", "0003_handoff")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_identity_external_id", "identity", ["external_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_external_id", table_name="identity")
