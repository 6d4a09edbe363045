"""Test databases at the latest schema without running every migration for every test.

Migrating a database takes ~0.4 s; a suite of a thousand database tests paid it each time.
Each test process migrates once per engine and copies the result: a SQLite file copied,
a PostgreSQL database cloned (``tests.utils.pg.migrated_database``). The template's name
carries a digest of the migration files, so a new migration makes a new template.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[2] / "heliograph" / "migrations" / "versions"

_sqlite_template: Path | None = None


def migrations_digest() -> str:
    """A short digest of every migration file: the schema the templates are at."""
    digest = hashlib.sha1()
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def migrated_sqlite(path: Path) -> str:
    """A SQLite file at ``path`` at the latest schema (a copy of this process's template,
    migrated the first time it is asked for); its URL."""
    global _sqlite_template
    from heliograph.migrate import upgrade

    if _sqlite_template is None or not _sqlite_template.exists():
        folder = Path(tempfile.gettempdir()) / f"heliograph-tests-{os.getpid()}"
        folder.mkdir(parents=True, exist_ok=True)
        template = folder / f"schema-{migrations_digest()}.db"
        if not template.exists():
            building = folder / f"{template.name}.building"
            building.unlink(missing_ok=True)
            upgrade(sqlite_url(building))  # every connection closed: no -wal file is left
            building.replace(template)
        _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)
    return sqlite_url(path)
