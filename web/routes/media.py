"""``GET /media/<signed token>``: a file an agent sent, for the provider that fetches it.

Twilio (``MediaUrl``) and the API channel get a URL signed with itsdangerous
(``inbox.attachments_out.media_url``); it works for ``MEDIA_URL_MAX_AGE_S`` (1 h) and is a
403 once expired or tampered with. No session: the signature is the permission.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from heliograph.db import get_db
from inbox.attachments_out import MediaTokenInvalid, get_out, open_token

router = APIRouter(tags=["media"])


@router.get("/media/{token}", summary="A file an agent sent (signed, short-lived link)")
async def media(token: str) -> Response:
    try:
        attachment_id = open_token(token)
    except MediaTokenInvalid as exc:
        raise HTTPException(403, str(exc)) from exc
    async with get_db().read_session() as session:
        sent = await get_out(session, attachment_id)
    try:
        data = await asyncio.to_thread(sent.read) if sent is not None else None
    except OSError:
        data = None
    if sent is None or data is None:
        raise HTTPException(404, "no such file")
    return Response(
        data,
        media_type=sent.content_type,
        headers={
            "Content-Disposition": f'inline; filename="{sent.filename.replace(chr(34), "")}"',
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )
