"""One ASGI middleware for every request: request id, abuse limits, security headers, metrics.

Pure ASGI (not ``BaseHTTPMiddleware``, which costs a task and a stream per request and
breaks streaming answers): bench/ingest.py measures this door, so each step is a few
microseconds (header scans, in-memory counters, cached metric children).

- The request id is the caller's ``X-Request-ID`` if it is sane, else a fresh one; it is
  in every log line of the request, in the jobs it enqueues, and echoed in the answer.
- Limits (``heliograph.ratelimit``), by the route's class, not route by route: an IP past
  its failed authentications gets 429 before anything else is looked at; a provider
  webhook (``/webhooks/<channel>/...``, ``/api/v1/inbound``) counts against its channel;
  the REST API (``/api/v1/...``) against the bearer token (a hash of it: no database).
  Every 401 answered counts against the client's IP. A 429 carries ``Retry-After``.
- Security headers on every answer; the Content-Security-Policy allows nothing for the
  JSON API and only what the Swagger UI / ReDoc pages load (from jsDelivr) on /docs and
  /redoc; ``Strict-Transport-Security`` when the public URL is https.
- Metrics (``web.metrics``): latency and status class per route template.
- The web app's pages and static files are gzip-compressed when the browser accepts it
  (Starlette's ``GZipMiddleware``, 500 bytes at least; it never touches
  ``text/event-stream``, so the ``/live`` stream is not buffered): 83 KB of inbox HTML is
  about 8 KB on the wire. The pages mask their CSRF token per render against BREACH
  (``web.ui.session``). Each page's CSP carries a fresh nonce for its inline critical CSS
  (``scope["state"]["csp_nonce"]``, ``csp_nonce`` in templates).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import orjson
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heliograph import logs, ratelimit
from heliograph.settings import get_settings
from web import metrics

_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# What FastAPI's /docs (Swagger UI) and /redoc pages load: scripts and styles from jsDelivr,
# an inline start-up script, the FastAPI favicon, ReDoc's Google font and its blob worker.
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    b"https://cdn.jsdelivr.net; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs", "/redoc")
# The web app (web/ui): its own scripts and styles only (vendored htmx, no inline script;
# an inline <style> only with this response's nonce), its live stream, images and voice
# notes of its own origin.
_APP_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'nonce-%s'; "
    b"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    b"font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_GZIP_MIN_BYTES = 500
_GZIP_LEVEL = 6  # Starlette's 9 costs render CPU for a few bytes less
# Never compressed: the SSE stream (it would be held back) and what is compressed already
# (attachments: images, voice notes, archives).
_GZIP_EXCLUDED = (
    "text/event-stream",
    *("image/jpeg", "image/png", "image/gif", "image/webp"),
    *("audio/ogg", "audio/mpeg", "audio/mp4", "audio/webm", "video/mp4", "video/webm"),
    *("application/zip", "application/gzip", "application/pdf", "application/octet-stream"),
)
# Never compressed: the SSE stream (GZipMiddleware skips text/event-stream anyway; not even
# wrapped, so nothing can buffer it) and the signed media URLs providers fetch.
_NOT_GZIPPED = ("/live", "/media/")
# What is not the web app: the API, webhooks, health and metrics, the docs.
_NOT_APP = ("/api/", "/webhooks/", "/healthz", "/metrics", "/openapi.json")
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_FAILED_AUTH = "too many failed authentications from this address"
_INBOUND_API = "/api/v1/inbound"  # the generic API channel's webhook (HMAC, no token)


class ProtectionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip_app = GZipMiddleware(
            app,
            minimum_size=_GZIP_MIN_BYTES,
            compresslevel=_GZIP_LEVEL,
            exclude_content_types=_GZIP_EXCLUDED,
        )
        self.hsts = get_settings().public_url.lower().startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_id, token = _request_headers(scope)
        request_id = logs.request_id_from(incoming_id)
        path: str = scope["path"]
        app_page = self._is_app(path)
        nonce = None
        if app_page:
            nonce = secrets.token_urlsafe(16)
            scope.setdefault("state", {})["csp_nonce"] = nonce
        inner = self.gzip_app if app_page and not path.startswith(_NOT_GZIPPED) else self.app
        headers = self._headers(path, request_id, nonce)
        status, answered, refused = 500, False, False
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [h for h in headers if h[0] not in present]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        with logs.request_scope(request_id):
            try:
                refusal = await _refusal(scope, path, token)
                if refusal is None:
                    await inner(scope, receive, send_with_headers)
                else:
                    refused = True
                    await _too_many(send_with_headers, *refusal)
            except Exception:
                if not answered:  # the 500 that follows gets our headers and is counted
                    await _internal_error(send_with_headers)
                raise
            finally:
                route = "(refused)" if refused else _route_template(scope)
                metrics.observe_request(
                    scope["method"], route, status, time.perf_counter() - started
                )
                if status == 401:
                    await ratelimit.record("failed_auth", _client_ip(scope))

    @staticmethod
    def _is_app(path: str) -> bool:
        return not path.startswith(_DOCS_PATHS) and not path.startswith(_NOT_APP)

    def _headers(self, path: str, request_id: str, nonce: str | None) -> list[tuple[bytes, bytes]]:
        if path.startswith(_DOCS_PATHS):
            csp = _DOCS_CSP
        elif path.startswith(_NOT_APP):
            csp = _API_CSP
        else:
            csp = _APP_CSP % (nonce or secrets.token_urlsafe(16)).encode()
        out = [*_COMMON, (b"content-security-policy", csp), (b"x-request-id", request_id.encode())]
        if self.hsts:
            out.append(_HSTS)
        return out


def _request_headers(scope: Scope) -> tuple[str | None, str | None]:
    """The X-Request-ID and the bearer token, in one pass over the raw headers."""
    request_id = token = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value.decode("latin-1")
        elif name == b"authorization" and value[:7].lower() == b"bearer ":
            token = value[7:].strip().decode("latin-1")
    return request_id, token


def _client_ip(scope: Scope) -> str:
    # uvicorn puts the proxy's X-Forwarded-For here when --forwarded-allow-ips trusts it.
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _limit_for(path: str, token: str | None) -> tuple[str, str, str] | None:
    """``(limit, key, what it counts)`` for this path's class; None: no throughput limit."""
    if path.startswith("/webhooks/"):
        source = path.split("/", 3)[2]
        # The channel name from the path: plain and short, so that made-up paths cannot
        # make keys without end (they answer 404 anyway).
        source = source if source.isalpha() and len(source) <= 20 else "other"
        return "webhook", source, f"too many requests on the {source} webhook"
    if path == _INBOUND_API:
        return "webhook", "api", "too many requests on the api webhook"
    if token and path.startswith("/api/"):
        key = hashlib.sha256(token.encode()).hexdigest()[:32]
        return "api", key, "too many requests with this API token"
    return None


async def _refusal(scope: Scope, path: str, token: str | None) -> tuple[str, str, int] | None:
    """``(limit, message, retry_after)`` when a limit refuses this request."""
    try:
        await ratelimit.check("failed_auth", _client_ip(scope))
    except ratelimit.RateLimited as exc:
        return exc.name, _FAILED_AUTH, exc.retry_after
    limit = _limit_for(path, token)
    if limit is None:
        return None
    name, key, what = limit
    try:
        await ratelimit.hit(name, key)
    except ratelimit.RateLimited as exc:
        return exc.name, what, exc.retry_after
    return None


async def _too_many(send: Send, limit: str, what: str, retry_after: int) -> None:
    metrics.observe_refusal(limit)
    body = orjson.dumps({"error": f"{what}; try again in {retry_after} s"})
    await _answer(send, 429, body, [(b"retry-after", str(retry_after).encode())])


async def _internal_error(send: Send) -> None:
    body = orjson.dumps({"error": "internal error; the details are in the server log"})
    await _answer(send, 500, body, [])


async def _answer(send: Send, status: int, body: bytes, extra: list[Any]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    """The matched route's full path template (``/api/v1/conversations/{conversation_id}``);
    one label for every path that matched none.

    FastAPI leaves an included router's own route in ``scope["route"]``, whose template
    lacks the router prefixes; the prefix is what the path has before the route's part.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not template:
        return "(unmatched)"
    path: str = scope["path"]
    try:
        own = template.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return str(template)
    prefix = path[: len(path) - len(own)] if path.endswith(own) else ""
    return prefix + template
