"""Run Alembic from code (``heliograph migrate``, tests, ``make run``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(_INI))
    config.set_main_option("script_location", str(_INI.parent / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Blocking; from async code use ``await asyncio.to_thread(upgrade, url)``."""
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str | None = None) -> None:
    await asyncio.to_thread(upgrade, database_url)
