"""The sandbox server: ``python -m bots.sandbox`` or ``create_app()``."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from bots.sandbox import page
from bots.sandbox.core import control

# One module per provider fake; each exposes ``router``.
PROVIDERS = (
    "bots.sandbox.api_receiver",
    "bots.sandbox.smtp_sink",
    "bots.sandbox.telegram",
    "bots.sandbox.slack",
    "bots.sandbox.slack_team",
    "bots.sandbox.slack_responses",
    "bots.sandbox.twilio",
    "bots.sandbox.whatsapp",
    "bots.sandbox.libretranslate",
)


def create_app() -> FastAPI:
    app = FastAPI(title="Heliograph provider sandbox")
    app.include_router(control)
    app.include_router(page.router)
    for name in PROVIDERS:
        app.include_router(importlib.import_module(name).router)
    return app
