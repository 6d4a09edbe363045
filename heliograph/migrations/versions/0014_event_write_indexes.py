"""Indexes that cost every batch of events more than they gave.

Each batch of 1,000 events adds entries at random places of every index on
activity_event, and rewrites the score row of every customer it touches. Measured on a
bare SQLite file with a million events, the two indexes on activity_event took 45 ms
of every batch's insert and commit, 27 ms with the ones below.

- activity_event: the 7-column ``(customer_id, type, day, status, occurred_at, amount,
  ref)`` becomes ``(customer_id, occurred_at)``, which serves the timeline's pages and the
  triggers' look at one customer's recent events as well; only the rare rebuild of an
  aggregate (after a merge) now reads the rows. ``(type, day)`` becomes one partial index
  on ``day`` for each of the two types the trigger pass reads for everyone (milestones
  and tickets, about 8% of events).
- customer_score: no index on engagement, last_course_activity_at or computed_at. Every
  score write moved up to three entries; their readers scan instead (the trigger pass,
  which measured faster that way, 4.2 s against 5.4 s for 100,000 customers, and the
  nightly refresh, which now walks the primary key).
- enrollment: ``ix_enrollment_customer_id`` duplicated the unique
  ``(customer_id, program_id)`` index's leading column.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DROPPED = (
    ("customer_score", "ix_customer_score_engagement", ["engagement"]),
    ("customer_score", "ix_customer_score_last_course_activity_at", ["last_course_activity_at"]),
    ("customer_score", "ix_customer_score_computed_at", ["computed_at"]),
    ("enrollment", "ix_enrollment_customer_id", ["customer_id"]),
    ("activity_event", "ix_activity_event_type_day", ["type", "day"]),
)
_WIDE = ["customer_id", "type", "day", "status", "occurred_at", "amount", "ref"]
_PARTIAL = ("milestone_reported", "support_ticket")


def upgrade() -> None:
    for table, name, _ in _DROPPED:
        op.drop_index(name, table_name=table)
    op.drop_index("ix_activity_event_customer", table_name="activity_event")
    op.create_index("ix_activity_event_customer", "activity_event", ["customer_id", "occurred_at"])
    for kind in _PARTIAL:
        where = sa.text(f"type = '{kind}'")
        op.create_index(
            f"ix_activity_event_{kind}_day",
            "activity_event",
            ["day"],
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for kind in _PARTIAL:
        op.drop_index(f"ix_activity_event_{kind}_day", table_name="activity_event")
    op.drop_index("ix_activity_event_customer", table_name="activity_event")
    op.create_index("ix_activity_event_customer", "activity_event", _WIDE)
    for table, name, columns in _DROPPED:
        op.create_index(name, table, columns)
