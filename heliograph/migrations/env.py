"""Alembic environment: async engine from HELIOGRAPH_DATABASE_URL, metadata from SQLModel."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from heliograph.db import Database
from heliograph.settings import get_settings
from service.components import load_components

load_components()
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
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
