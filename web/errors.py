"""Every error answers JSON that says what was wrong; never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from channels.base import InvalidFields, WebhookError
from crm_core.identity import CustomerNotFound, MergeError
from heliograph import texts
from heliograph.db import CommitFailed, transient_reason
from inbox.attachments_out import AttachmentRefused
from inbox.conversations import ConversationNotFound, InvalidRequest
from routing.team import MemberNotFound
from web.ui.session import SignInRequired, sign_in_url, signed_in_member

_NOT_APP = ("/api/", "/webhooks/", "/healthz", "/metrics", "/openapi.json", "/docs", "/redoc")


def _wants_page(request: Request) -> bool:
    """A browser asking for a web app page (not the API, not an htmx fragment)."""
    return (
        not request.url.path.startswith(_NOT_APP)
        and "text/html" in request.headers.get("accept", "")
        and "hx-request" not in request.headers
    )


async def _error_page(request: Request, status_code: int, message: str) -> Response:
    from web.ui.render import page  # the templates load only when a page is shown

    # An unknown path runs no route, so no dependency has read the session: read it here,
    # so the page keeps the member's language and theme.
    member = await signed_in_member(request)
    titles = {403: "Not allowed", 404: "Not found", 429: "Too many attempts"}
    title = titles.get(status_code, "Something is wrong" if status_code < 500 else "Error")
    return page(
        request, "error.html", member, status_code=status_code, title=title, message=message
    )


log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_page(request):
            # A service's Text stays one, so the page shows it in the viewer's language.
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            return await _error_page(request, exc.status_code, detail)
        # One error shape for every status: {"error": "..."} (not FastAPI's {"detail": ...}).
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(AttachmentRefused)
    async def _attachment_refused(request: Request, exc: AttachmentRefused) -> Response:
        # The channel's provider would not take the file (size, type, count): nothing was
        # stored; the same answer as any 422 (JSON, or the error page for a web page).
        return await _http(request, StarletteHTTPException(422, texts.message(exc)))

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        target = sign_in_url(exc.next_url)
        if "hx-request" in request.headers:  # htmx follows this header with a full page load
            return Response(status_code=204, headers={"HX-Redirect": target})
        if not _wants_page(request):
            return JSONResponse({"error": "sign in first"}, status_code=401)
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(WebhookError)
    async def _webhook(_: Request, exc: WebhookError) -> JSONResponse:
        body: dict[str, object] = {"error": str(exc)}
        if isinstance(exc, InvalidFields) and exc.errors:
            body["fields"] = exc.errors
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(CommitFailed)
    async def _not_stored(_: Request, exc: CommitFailed) -> JSONResponse:
        # Nothing of it is known to be on disk: never a 200; the provider retries (and a
        # retry of what was stored after all is a replay, a no-op).
        return JSONResponse(
            {"error": f"the message was not stored, try again: {exc}"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        # Concurrent transactions locked each other (PostgreSQL broke the deadlock by
        # rolling this one back) or the write lock stayed taken: nothing of the request
        # was stored, and the same request is likely to pass at once. Any other database
        # error is unexpected (below).
        reason = transient_reason(exc)
        if reason is None:
            raise exc
        log.warning("%s %s rolled back: %s", request.method, request.url.path, reason)
        message = (
            f"the database was busy with concurrent work ({reason}); nothing was stored, try again"
        )
        if _wants_page(request):
            return await _error_page(request, 503, message)
        return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return JSONResponse({"error": "the body is not valid JSON"}, status_code=400)
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return JSONResponse({"error": summary, "fields": fields}, status_code=422)

    for not_found in (CustomerNotFound, ConversationNotFound, MemberNotFound):

        @app.exception_handler(not_found)
        async def _not_found(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": str(exc)}, status_code=404)

    for invalid in (InvalidRequest, MergeError):

        @app.exception_handler(invalid)
        async def _invalid(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"error": str(exc)}, status_code=409)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal error; the details are in the server log"}, status_code=500
        )
