"""A fake of Slack's ``response_url``: where a slash command's delayed answer is POSTed.

Slack gives every slash command a ``response_url``
(https://docs.slack.dev/interactivity/handling-user-interaction/#message_responses); the
app may POST a JSON message there (``response_type``, ``text``, ``blocks``,
``replace_original``) up to five times within 30 minutes. Here that URL is
``{sandbox}/slack/responses/{key}``: each POST is recorded (also in ``/_sandbox/calls``
as provider ``slack``, method ``response_url``), ``GET /_sandbox/slack/responses/{key}``
lists what arrived for one command, and ``POST /_sandbox/slack/responses/fail`` makes
the next N POSTs fail with a 500 (to show the retry). ``POST /_sandbox/command/slack``
plays a Slack user typing a slash command: a signed request to Heliograph whose
``response_url`` points back here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from slack_sdk.signature import SignatureVerifier

from channels.slack.fake import APP_ID, TEAM_ID
from channels.slack.settings import SlackSettings
from heliograph.settings import get_settings
from sandbox.core import state

router = APIRouter(tags=["slack fake"])
_responses: dict[str, list[dict[str, Any]]] = {}
_fail_next = [0]


@router.post("/slack/responses/{key}", include_in_schema=False)
async def response_url(key: str, request: Request) -> PlainTextResponse:
    try:
        body = await request.json()
    except ValueError as exc:
        raise HTTPException(400, "the body must be JSON") from exc
    if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
        return PlainTextResponse("no_text", status_code=400)  # Slack's answer
    if _fail_next[0] > 0:
        _fail_next[0] -= 1
        return PlainTextResponse("internal_error", status_code=500)
    if len(_responses.get(key, [])) >= 5:
        return PlainTextResponse("used_url", status_code=404)
    state.record("slack", "response_url", {"key": key, **body})
    _responses.setdefault(key, []).append({"at": time.time(), **body})
    return PlainTextResponse("ok")


@router.get("/_sandbox/slack/responses/{key}", include_in_schema=False)
async def responses_for(key: str) -> list[dict[str, Any]]:
    return _responses.get(key, [])


class FailIn(BaseModel):
    count: int = Field(ge=0, le=100)


@router.post("/_sandbox/slack/responses/fail", include_in_schema=False)
async def fail_next(body: FailIn) -> dict[str, int]:
    _fail_next[0] = body.count
    return {"fail_next": body.count}


class CommandIn(BaseModel):
    user_id: str = Field(pattern=r"^[UW][A-Z0-9]{2,}$")
    text: str = ""
    command: str = "/hg"


@router.post("/_sandbox/command/slack", include_in_schema=False)
async def command(body: CommandIn, request: Request) -> JSONResponse:
    """Act as a Slack user typing ``{command} {text}``; answers what Heliograph answered
    and the key under which its later answers arrive."""
    key = uuid.uuid4().hex
    form = command_form(
        body.command, body.text, body.user_id, f"{request.base_url}slack/responses/{key}"
    )
    settings = get_settings()
    timestamp = str(int(time.time()))
    raw = urlencode(form).encode()
    verifier = SignatureVerifier(SlackSettings.get().slack_signing_secret or "-")
    signature = verifier.generate_signature(timestamp=timestamp, body=raw)
    async with httpx.AsyncClient(timeout=10) as client:
        answered = await client.post(
            f"{settings.public_url}/webhooks/slack/commands",
            content=raw,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature or "",
            },
        )
    try:
        answer: Any = answered.json()
    except ValueError:
        answer = answered.text
    return JSONResponse({"status": answered.status_code, "answer": answer, "key": key})


def command_form(command: str, text: str, user_id: str, response_url: str) -> dict[str, str]:
    """The form Slack posts for a slash command (its documented fields)."""
    return {
        "token": "sandboxverificationtoken",
        "team_id": TEAM_ID,
        "team_domain": "sandbox",
        "channel_id": "C0SANDBOX1",
        "channel_name": "team-leads",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex}",
    }
