"""The list of personal data (crm_core/personal_data.py) covers every table and text column.

A new model with a text, string or JSON column fails here until its columns are
classified, so no new copy of a customer's words escapes erasure and the export.
"""

from __future__ import annotations

from sqlalchemy import JSON, LargeBinary, String, Table, TypeDecorator
from sqlalchemy.types import ARRAY, TypeEngine
from sqlmodel import Field, SQLModel

from crm_core.personal_data import PERSONAL, TABLES
from service.components import load_components


def _holds_text(kind: TypeEngine) -> bool:
    while isinstance(kind, TypeDecorator):  # AutoString, UTCDateTime, ...
        kind = kind.impl_instance
    return isinstance(kind, (String, JSON, LargeBinary, ARRAY))


def unclassified(tables: list[Table]) -> list[str]:
    """``table.column`` for each text column the list does not classify (and each table
    it does not name)."""
    missing = []
    for table in tables:
        entry = TABLES.get(table.name)
        if entry is None:
            missing.append(f"{table.name} (the table)")
            continue
        missing += [
            f"{table.name}.{c.name}"
            for c in table.columns
            if _holds_text(c.type) and c.name not in entry.kinds
        ]
    return missing


def test_every_table_and_text_column_is_classified() -> None:
    load_components()
    assert unclassified(list(SQLModel.metadata.sorted_tables)) == []


def test_the_list_names_only_tables_and_columns_that_exist() -> None:
    load_components()
    tables = SQLModel.metadata.tables
    stale = [
        f"{name}.{column}"
        for name, entry in TABLES.items()
        for column in entry.kinds
        if name not in tables or column not in tables[name].c
    ]
    assert stale == []
    # Each column is in one class only, and what is personal is exported somewhere.
    for name, entry in TABLES.items():
        columns = entry.personal + entry.mentions + entry.team + entry.other
        assert len(columns) == len(set(columns)), name
        if any(kind == PERSONAL for kind in entry.kinds.values()):
            assert entry.export, f"{name} holds personal data but no export section"


def test_a_new_model_with_a_text_column_fails_until_classified() -> None:
    class Scribble(SQLModel, table=True):  # a table some future change might add
        __tablename__ = "test_scribble"
        metadata = SQLModel.metadata.__class__()  # kept out of the app's metadata

        id: int | None = Field(default=None, primary_key=True)
        customer_id: int
        words: str

    table = Scribble.__table__  # type: ignore[attr-defined]
    assert unclassified([table]) == ["test_scribble (the table)"]
    TABLES["test_scribble"] = TABLES["note"]  # classified like a note ("text" only)
    try:
        assert unclassified([table]) == ["test_scribble.words"]
    finally:
        del TABLES["test_scribble"]
