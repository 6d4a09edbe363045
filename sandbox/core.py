"""What every fake shares: the call recorder and the failure plan."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field


@dataclass
class Call:
    seq: int
    provider: str
    method: str
    params: dict[str, Any]
    at: float


@dataclass
class Failure:
    mode: str  # "500", "429", "timeout"
    until: float
    retry_after: int = 1


@dataclass
class SandboxState:
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    failed_calls: int = 0
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def record(self, provider: str, method: str, params: dict[str, Any]) -> Call:
        call = Call(next(self._seq), provider, method, params, time.time())
        self.calls.append(call)
        return call

    async def maybe_fail(self, provider: str) -> Response | None:
        """Answer as a failing provider would, while a failure plan is in force."""
        failure = self.failures.get(provider)
        if failure is None or time.monotonic() >= failure.until:
            self.failures.pop(provider, None)
            return None
        self.failed_calls += 1
        if failure.mode == "timeout":
            await asyncio.sleep(min(failure.until - time.monotonic(), 30))
            return JSONResponse({"ok": False, "error": "timeout"}, status_code=504)
        if failure.mode == "429":
            return JSONResponse(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {failure.retry_after}",
                    "parameters": {"retry_after": failure.retry_after},
                    "error": "ratelimited",
                },
                status_code=429,
                headers={"Retry-After": str(failure.retry_after)},
            )
        return JSONResponse({"ok": False, "error": "internal_error"}, status_code=500)


state = SandboxState()
# Channels a person can write on from the sandbox page / `heliograph sandbox say`; each
# provider module that implements ``POST /_sandbox/say/<channel>`` adds its name.
SAY_CHANNELS: list[str] = []


class FailIn(BaseModel):
    provider: str = Field(description="telegram, slack, api, ...")
    mode: str = Field(pattern="^(500|429|timeout)$")
    seconds: float = Field(gt=0, le=3600)
    retry_after: int = Field(default=1, ge=0, le=3600)


control = APIRouter(prefix="/_sandbox", tags=["sandbox control"])


@control.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@control.get("/calls")
async def calls(provider: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
    return [
        c.__dict__
        for c in state.calls
        if (provider is None or c.provider == provider) and (method is None or c.method == method)
    ]


@control.delete("/calls")
async def clear() -> dict[str, int]:
    count = len(state.calls)
    state.calls.clear()
    return {"cleared": count}


@control.post("/fail")
async def fail(body: FailIn) -> dict[str, Any]:
    state.failures[body.provider] = Failure(
        body.mode, time.monotonic() + body.seconds, body.retry_after
    )
    return {"provider": body.provider, "mode": body.mode, "seconds": body.seconds}


@control.delete("/fail")
async def recover(provider: str) -> dict[str, str]:
    state.failures.pop(provider, None)
    return {"provider": provider, "mode": "none"}


async def read_params(request: Request) -> dict[str, Any]:
    """Providers' SDKs post JSON, urlencoded or multipart forms; read whichever came."""
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        try:
            data = await request.json()
        except ValueError as exc:
            raise HTTPException(400, "invalid JSON") from exc
        return dict(data) if isinstance(data, dict) else {"_body": data}
    if "form" in ctype:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    return dict(request.query_params)
