"""A receiver for the API channel's outbound replies: checks the signature, records them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from channels.api.settings import ApiSettings
from heliograph.settings import get_settings
from sandbox.core import SAY_CHANNELS, state

router = APIRouter(tags=["api channel receiver"])
SAY_CHANNELS.append("api")


@router.post("/api-receiver/replies")
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


class SayIn(BaseModel):
    text: str
    sender: str = Field(default="1001", alias="from")


@router.post("/_sandbox/say/api", include_in_schema=False)
async def say(body: SayIn) -> JSONResponse:
    """Act as an outside platform: sign a message and post it to Heliograph's API channel."""
    settings = get_settings()
    secret = ApiSettings.get().api_inbound_secret
    payload = json.dumps(
        {
            "message_id": f"sandbox-{uuid.uuid4().hex}",
            "sender": {"id": body.sender, "name": f"Sandbox customer {body.sender}"},
            "text": body.text,
        }
    ).encode()
    signature = "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{settings.public_url}/api/v1/inbound",
            content=payload,
            headers={"Content-Type": "application/json", "X-Heliograph-Signature": signature},
        )
    return JSONResponse(response.json(), status_code=response.status_code)
