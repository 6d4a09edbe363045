"""Web app: live updates (issue #16 "Live updates").

``GET /live`` is the page's one Server-Sent Events stream (``<div hx-ext="sse"
sse-connect="/live">``): every ``heliograph.live`` event of every process, by name
(``inbox``, ``conversation-<id>``, ``typing-<id>``), its data as JSON; a ``reload`` event
when the browser fell too far behind. ``POST /conversations/{id}/typing`` tells the
others that this member is writing a reply (at most one event per 2 s per member and
conversation); a member never hears their own typing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sse_starlette import EventSourceResponse

from heliograph import live
from inbox import conversations as conv
from web.deps import ReadSessionDep
from web.ui.session import CsrfDep, UiMemberDep

router = APIRouter(include_in_schema=False)

PING_SECONDS = 15
TYPING_EVERY = 2.0  # seconds between two typing events of one member on one conversation
_last_typing: dict[tuple[int, int], float] = {}


@router.get("/live")
async def stream(request: Request, member: UiMemberDep) -> EventSourceResponse:
    subscription = live.subscribe()
    me = member.id

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            async for name, data in subscription:
                if name.startswith("typing-") and data.get("member_id") == me:
                    continue  # not echoed back to the one who types
                yield {"event": name, "data": json.dumps(data)}
        finally:
            subscription.close()

    return EventSourceResponse(events(), ping=PING_SECONDS)


@router.post("/conversations/{conversation_id}/typing", dependencies=[CsrfDep])
async def typing(conversation_id: int, member: UiMemberDep, session: ReadSessionDep) -> Response:
    try:
        await conv.get_conversation(session, conversation_id)
    except conv.ConversationNotFound:
        raise HTTPException(404, "no such conversation") from None
    key, now = (member.id, conversation_id), time.monotonic()  # type: ignore[arg-type]
    if now - _last_typing.get(key, float("-inf")) >= TYPING_EVERY:
        if len(_last_typing) > 10_000:  # forget the old ones; the limit is seconds long
            for old in [k for k, t in _last_typing.items() if now - t >= TYPING_EVERY]:
                del _last_typing[old]
        _last_typing[key] = now
        live.publish(
            f"typing-{conversation_id}",
            {"conversation_id": conversation_id, "member_id": member.id, "name": member.name},
        )
    return Response(status_code=204)
