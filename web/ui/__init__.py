"""The web app (issue #16): server-rendered pages (Jinja2) made live with htmx and SSE.

Each module brings its pages' router; ``router`` holds them all and ``static`` serves
``web/ui/static`` (the vendored htmx files among them: ``static/vendor/README.md``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from web.ui import auth, canned, conversation, customer, inbox, live

router = APIRouter(include_in_schema=False)
for module in (auth, inbox, conversation, customer, canned, live):
    router.include_router(module.router)

static = StaticFiles(directory=Path(__file__).parent / "static")
