"""The sandbox server's shell: ``create_app(fakes)`` mounts the control routes, the page,
the LibreTranslate fake and the provider fakes it is given. Which fakes there are is the
channel registry's to say (``channels.registry.sandbox_app``, what ``python -m sandbox``
serves); the shell imports no part of the service."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI

from sandbox import libretranslate, page
from sandbox.core import control


def create_app(fakes: Iterable[APIRouter] = ()) -> FastAPI:
    app = FastAPI(title="Heliograph provider sandbox")
    app.include_router(control)
    app.include_router(page.router)
    for router in fakes:
        app.include_router(router)
    app.include_router(libretranslate.router)
    return app
