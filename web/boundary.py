"""The HTTP boundary: every request's text and JSON checked once, before any route.

One ASGI middleware instead of a check per route (heliograph/bounds.py says what is
refused and why):

- a NUL character in the path or the query string: 422 naming the parameter;
- a JSON body nested deeper than 64 levels: 400 (Python's parser would otherwise raise
  RecursionError inside FastAPI, a 500), for every JSON body, webhooks included;
- a JSON or form body holding NUL, NaN/Infinity or an integer past 64 bits: 422 naming
  the field, in the shape of any validation error;
- a JSON body over BUFFER_LIMIT: 413 (FastAPI's own parser has no limit).

Two kinds of route see their bodies' text unchecked here, on purpose: provider webhooks
(the body must reach the signature check byte for byte; after it, WebhookRequest strips
NUL, because refusing would make the provider retry a customer's message forever and
then drop it) and ``POST /api/v1/events`` (a bad event is reported by its index and the
rest of the batch kept, crm_core/events.py; it reads its body with the same bounded
``load_json``, so its depth limit is this one).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heliograph.bounds import (
    HAS_NUL,
    NUL,
    InputRefused,
    TooDeep,
    find_problem,
    load_json,
    may_nest_past,
)

WEBHOOKS = ("/webhooks/", "/api/v1/inbound")
PER_ITEM = ("/api/v1/events",)
BUFFER_LIMIT = 16 * 1024 * 1024  # past this a route's own size limit answers (413)


def _text_checked(path: str) -> bool:
    return not path.startswith(WEBHOOKS) and path not in PER_ITEM


def _media_type(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


def _is_json(media: str) -> bool:
    return media in ("", "application/json") or media.endswith("+json")


def _query_problem(scope: Scope) -> InputRefused | None:
    if NUL in unquote(scope.get("path", "")):
        return InputRefused(HAS_NUL, "path")
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if NUL in name or NUL in value:
            return InputRefused(HAS_NUL, f"query.{name.replace(NUL, '')}")
    return None


def _body_problem(body: bytes, media: str, text_checked: bool) -> InputRefused | None:
    if _is_json(media):
        if not text_checked and not may_nest_past(body):
            return None  # a webhook: only its depth matters here, and it cannot be too deep
        try:
            value = load_json(body)
        except TooDeep as exc:
            return exc
        except (ValueError, UnicodeDecodeError):
            return None  # not JSON: the route answers 400 with its own words
        return find_problem(value, strict_numbers=True) if text_checked else None
    if media == "application/x-www-form-urlencoded" and text_checked:
        form = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return find_problem(dict(form))
    return None


class TooLarge(InputRefused):
    def __init__(self) -> None:
        super().__init__(f"the body is over the limit of {BUFFER_LIMIT} bytes")


async def _answer(send: Send, problem: InputRefused) -> None:
    status = 400 if isinstance(problem, TooDeep) else 413 if isinstance(problem, TooLarge) else 422
    body: dict[str, Any] = {"error": str(problem)}
    if status == 422:
        body["fields"] = [{"field": problem.where, "problem": problem.problem}]
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class BoundaryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        text_checked = _text_checked(path)
        if text_checked and (problem := _query_problem(scope)) is not None:
            return await _answer(send, problem)
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS") or not (
            text_checked or path.startswith(WEBHOOKS)
        ):
            # A per-item route parses its body with the same bounded loader itself; a
            # second parse here would only cost time on the busiest route.
            return await self.app(scope, receive, send)
        received, complete = await _buffer(receive)
        media = _media_type(scope)
        if complete:
            body = b"".join(m.get("body", b"") for m in received)
            problem = _body_problem(body, media, text_checked)
            if problem is not None:
                return await _answer(send, problem)
        elif _is_json(media) and received[-1]["type"] == "http.request":
            # Unchecked JSON would reach FastAPI's parser, which has no limit of its own.
            return await _answer(send, TooLarge())
        await self.app(scope, _replay(received, receive), send)


async def _buffer(receive: Receive) -> tuple[list[Message], bool]:
    """The body's messages as far as BUFFER_LIMIT; complete=False when it goes past."""
    received: list[Message] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, False  # the client went away
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return received, True
        if size > BUFFER_LIMIT:
            return received, False


def _replay(received: list[Message], receive: Receive) -> Receive:
    pending = list(received)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
