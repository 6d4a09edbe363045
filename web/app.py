"""The FastAPI application (composition root): routes, background workers, scheduler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from heliograph import __version__
from heliograph.db import close_db, get_db
from heliograph.migrate import check_schema
from heliograph.runtime import Background, settle_collector
from heliograph.settings import get_settings
from service.components import load_components

load_components()

import importlib  # noqa: E402

from channels import base as bots_base  # noqa: E402
from channels.api import close_client  # noqa: E402
from web import errors  # noqa: E402
from web.boundary import BoundaryMiddleware  # noqa: E402
from web.protection import ProtectionMiddleware  # noqa: E402
from web.token_use import TokenUseMiddleware  # noqa: E402

# One router module per concern; a channel's webhook routes are one more line here.
ROUTERS = (
    "web.routes.health",
    "web.routes.inbound",
    "web.routes.email",
    "web.api",
    "web.routes.telegram",
    "web.routes.slack",
    "web.routes.twilio",
    "web.routes.whatsapp",
)

log = logging.getLogger("heliograph")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    await check_schema(get_db().engine)
    background = Background(get_db(), settings)
    background.start(workers=settings.run_workers, scheduler=settings.run_scheduler)
    for hook in bots_base.startup_hooks:
        await hook()
    settle_collector()
    app.state.background = background
    log.info("Heliograph %s serving; database %s", __version__, settings.database_url)
    try:
        yield
    finally:
        await background.stop()
        for hook in bots_base.shutdown_hooks:
            await hook()
        await close_client()
        await close_db()


def create_app() -> FastAPI:
    app = FastAPI(
        title="Heliograph",
        version=__version__,
        description="Conversational inbox for global customer teams. REST API v1.",
        lifespan=lifespan,
    )
    errors.install(app)
    for name in ROUTERS:
        app.include_router(importlib.import_module(name).router)
    # The innermost: an API token's last use is written once its route is done.
    app.add_middleware(TokenUseMiddleware)
    # NUL characters, JSON depth and numbers checked once for every route (400/422).
    app.add_middleware(BoundaryMiddleware)
    # Request id, abuse limits, security headers and metrics for every answer: added last,
    # so it is the outermost middleware and sees the answers of the others too.
    app.add_middleware(ProtectionMiddleware)
    return app
