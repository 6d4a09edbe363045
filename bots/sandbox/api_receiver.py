"""A receiver for the API channel's outbound replies: checks the signature, records them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bots.sandbox.core import state

router = APIRouter(prefix="/api-receiver", tags=["api channel receiver"])


@router.post("/replies")
async def replies(request: Request) -> JSONResponse:
    failing = await state.maybe_fail("api")
    if failing is not None:
        return failing  # type: ignore[return-value]
    body = await request.body()
    secret = os.environ.get("HELIOGRAPH_API_OUTBOUND_SECRET") or os.environ.get(
        "HELIOGRAPH_API_INBOUND_SECRET", ""
    )
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Heliograph-Signature", "")):
        return JSONResponse({"error": "bad signature"}, status_code=403)
    state.record("api", "reply", json.loads(body))
    return JSONResponse({"ok": True})
