"""A text index over every message, for the inbox search (issue #16).

SQLite: ``message_search``, an FTS5 table with the ``trigram`` tokenizer (SQLite >= 3.34)
whose content is ``message`` (``text`` and ``original_text``; external content, so the
words are not stored twice), kept in step by triggers and filled here ('rebuild').
PostgreSQL: ``pg_trgm`` GIN indexes on ``lower(text)`` and (where there is one)
``lower(original_text)``, which answer ``LIKE '%q%'``. ``inbox/listing.py``
(``message_text_condition``) reads them.

SQLite drops a table's triggers with the table: a later migration that rebuilds ``message``
(``batch_alter_table``) must create these triggers again.

Revision ID: 0022_message_search
Revises: 0021_job_batches
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022_message_search"
down_revision: str | Sequence[str] | None = "0021_job_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Case-folded (the tokenizer's default), every 3 characters of the words, spaces included:
# a phrase query is a substring match.
SQLITE_TABLE = """
CREATE VIRTUAL TABLE message_search USING fts5(
    text, original_text, content='message', content_rowid='id', tokenize='trigram'
)
"""
# An external-content table is told what each row held: the old values on delete. Only an
# UPDATE that sets text or original_text re-indexes (a delivery status, a time stamp does
# not); the GDPR erasure and the edits (inbox/gdpr.py, inbox/edits.py) are such UPDATEs.
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER message_search_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_search (rowid, text, original_text)
        VALUES (new.id, new.text, new.original_text);
    END
    """,
    """
    CREATE TRIGGER message_search_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_search (message_search, rowid, text, original_text)
        VALUES ('delete', old.id, old.text, old.original_text);
    END
    """,
    """
    CREATE TRIGGER message_search_update AFTER UPDATE OF text, original_text ON message BEGIN
        INSERT INTO message_search (message_search, rowid, text, original_text)
        VALUES ('delete', old.id, old.text, old.original_text);
        INSERT INTO message_search (rowid, text, original_text)
        VALUES (new.id, new.text, new.original_text);
    END
    """,
)
SQLITE_TRIGGER_NAMES = ("message_search_insert", "message_search_delete", "message_search_update")

# The original text only where there is one (a translated or edited message): the index of
# a column that is mostly NULL stays small, and costs nothing when a message arrives.
PG_INDEXES = {
    "ix_message_text_trgm": "ON message USING gin (lower(text) gin_trgm_ops)",
    "ix_message_original_text_trgm": (
        "ON message USING gin (lower(original_text) gin_trgm_ops) WHERE original_text IS NOT NULL"
    ),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(SQLITE_TABLE)
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
        op.execute("INSERT INTO message_search (message_search) VALUES ('rebuild')")
    elif dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, definition in PG_INDEXES.items():
            op.execute(f"CREATE INDEX {name} {definition}")
        # The statistics of an expression index (how often a substring of lower(text) occurs)
        # exist only after an ANALYZE; the search reads the planner's estimate from them.
        op.execute("ANALYZE message")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS message_search")
    elif dialect == "postgresql":
        for name in PG_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        # The extension stays: another schema object may use it, and it holds no data.
