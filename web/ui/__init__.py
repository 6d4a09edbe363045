"""The web app (issue #16): server-rendered pages (Jinja2) made live with htmx and SSE.

Each module brings its pages' router; ``router`` holds them all and ``static`` serves
``web/ui/static`` (the vendored htmx files among them: ``static/vendor/README.md``).
Pages link their assets with a content hash in the URL (``static_url`` in
``web.ui.render``: ``/static/app.css?v=1a2b3c4d``), and such a versioned request is
answered ``Cache-Control: public, max-age=31536000, immutable``: a second visit asks for
no asset at all (a new version is a new URL). An unversioned URL keeps the validators
(ETag, Last-Modified) only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.ui import auth, canned, conversation, customer, end_of_day, inbox, live

router = APIRouter(include_in_schema=False)
for module in (auth, inbox, conversation, customer, canned, end_of_day, live):
    router.include_router(module.router)

# The files are gzip-compressed with the pages when the browser accepts it (web.protection):
# the JS and CSS (htmx most of it) travel in about a third of their size.
_IMMUTABLE = (b"cache-control", b"public, max-age=31536000, immutable")


class VersionedCache:
    """A year's immutable cache for a successful ``?v=<hash>`` asset request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        if scope["type"] != "http" or not any(p.startswith(b"v=") for p in query.split(b"&")):
            await self.app(scope, receive, send)
            return

        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (200, 304):
                message["headers"] = [*message.get("headers", ()), _IMMUTABLE]
            await send(message)

        await self.app(scope, receive, send_cached)


static = VersionedCache(StaticFiles(directory=Path(__file__).parent / "static"))
