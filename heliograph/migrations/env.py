"""Alembic environment: async engine from HELIOGRAPH_DATABASE_URL.

The migrations are written out, so an upgrade needs no models. Comparing the models with
the database (``revision --autogenerate``, ``check``) needs every table, and the kernel
names no package above it, not even in a string: the composition root hands the tables in,
from code (``heliograph.migrate.alembic_config(metadata=...)``) or on the command line as
``-x tables=MODULE``, a module with a ``metadata`` attribute (the composition root's tables
module; docs/cli.md has the command).
"""

from __future__ import annotations

import asyncio
import importlib

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from heliograph.db import Database
from heliograph.settings import get_settings


def _target_metadata() -> MetaData | None:
    given = context.config.attributes.get("target_metadata")
    if given is None:
        module = context.get_x_argument(as_dictionary=True).get("tables")
        given = importlib.import_module(module).metadata if module else None
    return given  # type: ignore[no-any-return]


target_metadata = _target_metadata()


def _modelled(name: str | None, type_: str, parent_names: object) -> bool:
    """What the comparison looks at: not the search index of migration 0022, which no model
    describes (SQLite's FTS5 table ``message_search`` and its shadow tables, PostgreSQL's
    trigram indexes ``*_trgm``), so ``check`` does not ask to drop it."""
    if type_ == "table" and name is not None and name.startswith("message_search"):
        return False
    return not (type_ == "index" and name is not None and name.endswith("_trgm"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_modelled,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    url = context.config.attributes.get("database_url")
    settings = (
        get_settings() if url is None else get_settings().model_copy(update={"database_url": url})
    )
    db = Database(settings)
    async with db.engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await db.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_online())


run_migrations_online()
