"""Stored explanations the web app translates (issue #16): beside the English ``reason`` of
an assignment, a handoff and an intervention, its template and parameters as JSON
(``heliograph.texts.dump``). Older rows keep NULL and show their English.

Revision ID: 0023_translatable_texts
Revises: 0022_message_search
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_translatable_texts"
down_revision: str | Sequence[str] | None = "0022_message_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("assignment", "handoff", "intervention")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("reason_text", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("reason_text")
