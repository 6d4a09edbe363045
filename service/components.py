"""Which packages make up the service. Imported by name, so the kernel imports nothing above it.

Importing a module registers what it provides: tables (SQLModel metadata), job handlers
and event subscribers, channel adapters and their senders, scheduler tasks.
"""

from __future__ import annotations

import importlib

MODULES = (
    "heliograph.models",
    "crm_core.models",
    "crm_core.periodic",
    "routing.models",
    "inbox.models",
    "inbox.conversations",
    "inbox.outbox",
    "inbox.periodic",
    "inbox.media",
    "transcription.models",
    "inbox.translation",
    "inbox.voice",
    "inbox.interventions",
    "inbox.gdpr",
    "routing.jobs",
    "routing.access",
    "handoff.models",
    "handoff.periodic",
    "handoff.gdpr",
    "routing.gdpr",
    "channels.api",
    "channels.email",
    "channels.telegram",
    "surfaces.telegram_models",
    "surfaces.telegram_send",
    "surfaces.telegram_agents",
    "channels.slack",
    "surfaces.models",
    "surfaces.slack_threads",
    "surfaces.slack_alerts",
    "surfaces.slack_inbound",
    "surfaces.slack_commands",
    "channels.twilio",
    "channels.whatsapp_cloud",
    "channels.whatsapp",
)


def load_components(*, tables_only: bool = False) -> None:
    """Import every component; ``tables_only`` imports just the models (fast CLI commands
    that touch a few tables need not load every provider SDK)."""
    for name in MODULES:
        if not tables_only or name.endswith(".models"):
            importlib.import_module(name)
