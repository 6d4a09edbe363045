"""Every table of the service: importing this module imports each package's models.

``SQLModel.metadata`` then holds them all (``metadata`` below is that object). The
composition root imports it: ``service.components`` first of all, the CLI's quick commands
alone (they touch a few tables and need not load every provider SDK), and Alembic when it
compares the models with the database (``-x tables=service.tables``, see
``heliograph/migrations/env.py``). ``tests/test_components.py`` fails when a module that
defines a table is missing here.
"""

from __future__ import annotations

from sqlmodel import SQLModel

import crm_core.models
import handoff.models
import heliograph.models
import inbox.models
import routing.models
import surfaces.models
import surfaces.telegram_models
import transcription.models

MODULES = (
    heliograph.models,
    crm_core.models,
    routing.models,
    inbox.models,
    transcription.models,
    handoff.models,
    surfaces.telegram_models,
    surfaces.models,
)
metadata = SQLModel.metadata
