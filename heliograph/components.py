"""Which packages make up the service. Imported by name, so the kernel imports nothing above it.

Importing a module registers what it provides: tables (SQLModel metadata), job handlers
and event subscribers, channel adapters and their senders, scheduler tasks.
"""

from __future__ import annotations

import importlib

MODULES = (
    "heliograph.models",
    "crm_core.models",
    "routing.models",
    "inbox.models",
    "inbox.conversations",
    "inbox.outbox",
    "inbox.periodic",
    "inbox.media",
    "bots.api_channel",
)


def load_components() -> None:
    for name in MODULES:
        importlib.import_module(name)
