"""What the service is made of: importing this module imports every component.

Importing a module registers what it provides: tables (SQLModel metadata), job handlers
and event subscribers, channel adapters and their senders, scheduler tasks. The imports are
plain ones, so a reader (or import-linter) can follow them, and ``tests/test_components.py``
lists what they must register: it fails when a module is left out.

The order is kept on purpose (hence no sorting): an event's subscribers get their jobs in
the order they subscribed, e.g. a customer message is mirrored to Telegram before Slack.
"""

# isort: skip_file
from __future__ import annotations

from types import ModuleType

import service.tables
import crm_core.periodic
import inbox.conversations
import inbox.outbox
import inbox.periodic
import inbox.media
import inbox.translation
import inbox.voice
import inbox.interventions
import inbox.gdpr
import routing.jobs
import routing.access
import handoff.periodic
import handoff.gdpr
import routing.gdpr
import channels.api
import channels.email
import channels.telegram
import surfaces.telegram_send
import surfaces.telegram_agents
import channels.slack
import surfaces.slack_threads
import surfaces.slack_alerts
import surfaces.slack_inbound
import surfaces.slack_commands
import channels.twilio
import channels.whatsapp_cloud
import channels.whatsapp
import channels.registry  # every package it lists, so a new channel needs no line here

MODULES: tuple[ModuleType, ...] = (
    *service.tables.MODULES,
    crm_core.periodic,
    inbox.conversations,
    inbox.outbox,
    inbox.periodic,
    inbox.media,
    inbox.translation,
    inbox.voice,
    inbox.interventions,
    inbox.gdpr,
    routing.jobs,
    routing.access,
    handoff.periodic,
    handoff.gdpr,
    routing.gdpr,
    channels.api,
    channels.email,
    channels.telegram,
    surfaces.telegram_send,
    surfaces.telegram_agents,
    channels.slack,
    surfaces.slack_threads,
    surfaces.slack_alerts,
    surfaces.slack_inbound,
    surfaces.slack_commands,
    channels.twilio,
    channels.whatsapp_cloud,
    channels.whatsapp,
    channels.registry,
)


def load_components() -> tuple[ModuleType, ...]:
    """Importing this module loaded every component; callers that like to say so at the
    point of use call this (it does nothing more) and get the modules."""
    return MODULES
