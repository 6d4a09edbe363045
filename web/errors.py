"""Every error answers JSON that says what was wrong; never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from channels.base import InvalidFields, WebhookError
from crm_core.identity import CustomerNotFound, MergeError
from heliograph.db import CommitFailed
from inbox.conversations import ConversationNotFound, InvalidRequest
from routing.team import MemberNotFound

log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # One error shape for every status: {"error": "..."} (not FastAPI's {"detail": ...}).
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

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
