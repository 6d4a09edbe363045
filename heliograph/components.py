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
    "bots.api_channel",
    "bots.email_channel",
    "bots.telegram",
    "bots.agents.telegram_models",
    "bots.agents.telegram_send",
    "bots.agents.telegram_agents",
    "bots.slack",
    "bots.agents.models",
    "bots.agents.slack_threads",
    "bots.agents.slack_alerts",
    "bots.agents.slack_inbound",
    "bots.agents.slack_commands",
    "bots.twilio",
    "bots.whatsapp_cloud",
    "bots.whatsapp",
)


def load_components(*, tables_only: bool = False) -> None:
    """Import every component; ``tables_only`` imports just the models (fast CLI commands
    that touch a few tables need not load every provider SDK)."""
    for name in MODULES:
        if not tables_only or name.endswith(".models"):
            importlib.import_module(name)
