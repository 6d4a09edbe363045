"""Run Alembic from code (``heliograph migrate``, tests, ``make run``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(database_url: str | None = None, metadata: MetaData | None = None) -> Config:
    """``metadata``: every table of the service (the composition root has it), to compare
    the models with the database; an upgrade does not need it (migrations/env.py)."""
    config = Config(str(_INI))
    config.set_main_option("script_location", str(_INI.parent / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    if metadata is not None:
        config.attributes["target_metadata"] = metadata
    return config


def upgrade(database_url: str | None = None, revision: str = "heads") -> None:
    """Blocking; from async code use ``await asyncio.to_thread(upgrade, url)``."""
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str | None = None) -> None:
    await asyncio.to_thread(upgrade, database_url)


class SchemaOutOfDate(RuntimeError):
    """The database is not at the schema this code expects."""


def head_revisions() -> set[str]:
    """Every head: branches made in parallel are all applied (``upgrade heads``)."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to serve on a database that `heliograph migrate` has not brought to head."""
    heads = head_revisions()
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            current = {str(r[0]) for r in rows}
    except Exception:
        current = set()
    if current != heads:
        raise SchemaOutOfDate(
            f"the database schema is at {', '.join(sorted(current)) or 'nothing'} but this code "
            f"needs {', '.join(sorted(heads))}: run `heliograph migrate` first"
        )
