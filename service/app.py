"""The FastAPI application (composition root): routes, background workers, scheduler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from heliograph import __version__, live
from heliograph.db import close_db, get_db
from heliograph.migrate import check_schema
from heliograph.runtime import Background, settle_collector
from heliograph.settings import get_settings, sections
from service.components import load_components

load_components()

from collections.abc import Sequence  # noqa: E402

from channels import base as channels_base  # noqa: E402
from channels import registry  # noqa: E402
from channels.base import ChannelPackage  # noqa: E402
from web import api, errors, ui  # noqa: E402
from web.boundary import BoundaryMiddleware  # noqa: E402
from web.protection import ProtectionMiddleware  # noqa: E402
from web.routes import health, media  # noqa: E402
from web.token_use import TokenUseMiddleware  # noqa: E402
from web.ui.sessions import add_sessions  # noqa: E402

log = logging.getLogger("heliograph")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    for section in sections():  # a placeholder secret of any channel fails here, at start
        section.get()
    await check_schema(get_db().engine)
    background = Background(get_db(), settings)
    background.start(workers=settings.run_workers, scheduler=settings.run_scheduler)
    for hook in channels_base.startup_hooks:
        await hook()
    settle_collector()
    await live.start(settings.database_url)  # LISTEN for other processes' live events
    app.state.background = background
    log.info("Heliograph %s serving; database %s", __version__, settings.database_url)
    try:
        yield
    finally:
        await background.stop()
        await live.stop()
        for hook in channels_base.shutdown_hooks:
            await hook()
        await close_db()


def create_app(packages: Sequence[ChannelPackage] | None = None) -> FastAPI:
    """The service's app: health, the REST API, and the webhook routes of every channel
    package in ``packages`` (``channels.registry.PACKAGES`` unless given)."""
    app = FastAPI(
        title="Heliograph",
        version=__version__,
        description="Conversational inbox for global customer teams. REST API v1.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(media.router)  # GET /media/<signed token> (#16 attachments)
    for package in registry.PACKAGES if packages is None else packages:
        if package.routes is not None:  # a channel's webhooks, e.g. /webhooks/telegram
            app.include_router(package.routes)
    app.include_router(api.router)
    app.include_router(ui.router)  # the web app: /, /sign-in, /conversations/7, ...
    app.mount("/static", ui.static, name="static")
    add_sessions(app)  # the web app's signed session cookie
    # The innermost: an API token's last use is written once its route is done.
    app.add_middleware(TokenUseMiddleware)
    # NUL characters, JSON depth and numbers checked once for every route (400/422).
    app.add_middleware(BoundaryMiddleware)
    # Request id, abuse limits, security headers and metrics for every answer: added last,
    # so it is the outermost middleware and sees the answers of the others too.
    app.add_middleware(ProtectionMiddleware)
    return app
