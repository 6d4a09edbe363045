"""Slack's three request URLs: Events API, slash commands, interactivity (slack-bolt).

Each request is verified by the Slack adapter first (403 on a bad or stale signature),
checked for shape (400), and only then handed to bolt through its FastAPI adapter, which
answers the url_verification challenge and runs the listeners. Events are stored before
bolt sees them, so the 200 Slack gets means the message is on disk.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from starlette.types import Message

from channels.base import Hook
from channels.slack import adapter, bolt_app
from inbox import intake

router = APIRouter(prefix="/webhooks/slack", tags=["channels"])


@router.post("/events", summary="Slack Events API (signed)")
async def events(request: Request, hook: Hook) -> Response:
    # verify -> parse -> store, committed. A retry (X-Slack-Retry-Num) goes the same way on
    # purpose: Slack retries when it did not get our 200, and the dedupe key makes a stored
    # message a no-op the second time.
    await adapter.verify(hook)  # before anything is parsed or stored
    items = adapter.parse(hook)
    await intake.receive(items, ignored=int(not items))
    return await _bolt(request, hook.body)


@router.post("/commands", summary="Slack slash commands (signed)")
async def commands(request: Request, hook: Hook) -> Response:
    await adapter.verify(hook)
    adapter.check_command(hook)
    return await _bolt(request, hook.body)


@router.post("/interactions", summary="Slack interactivity: buttons, modals (signed)")
async def interactions(request: Request, hook: Hook) -> Response:
    await adapter.verify(hook)
    adapter.check_interaction(hook)
    return await _bolt(request, hook.body)


async def _bolt(request: Request, body: bytes) -> Response:
    """Bolt reads the body again; the Hook consumed the stream, so replay what it read."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    handler = AsyncSlackRequestHandler(bolt_app())
    response = await handler.handle(Request(request.scope, replay))
    if response.status_code == 404:
        # Bolt has no listener for it (app_rate_limited, a new interaction type): verified,
        # nothing to store, so acknowledged and ignored, or Slack would retry it.
        return Response(status_code=200)
    return response
