"""Noting when each API token was last used, once its request is over.

``web.deps.current_member`` leaves the request's token in the ASGI scope's state; this
middleware writes ``last_used_at`` after the route is done (``routing.tokens``: at most
once a minute per token). Not earlier: on SQLite a route's write session holds the write
lock until the request ends, so a write from inside the request would wait for itself.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from routing.tokens import note_token_use

USED_TOKEN = "heliograph_api_token"  # the key in ``scope["state"]``


class TokenUseMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        token = (scope.get("state") or {}).get(USED_TOKEN) if scope["type"] == "http" else None
        if token is not None:
            await note_token_use(token)
