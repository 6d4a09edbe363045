"""The sandbox server: ``python -m sandbox`` or ``create_app()``."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from sandbox import page
from sandbox.core import control

# One module per provider fake; each exposes ``router``.
PROVIDERS = (
    "channels.api.fake",
    "channels.email.fake",
    "channels.telegram.fake",
    "channels.slack.fake",
    "channels.slack.fake_team",
    "channels.slack.fake_responses",
    "channels.twilio.fake",
    "channels.whatsapp_cloud.fake",
    "sandbox.libretranslate",
)


def create_app() -> FastAPI:
    app = FastAPI(title="Heliograph provider sandbox")
    app.include_router(control)
    app.include_router(page.router)
    for name in PROVIDERS:
        app.include_router(importlib.import_module(name).router)
    return app
