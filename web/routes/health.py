"""``/healthz`` (database reachable) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from heliograph.db import get_db
from web import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and database check")
async def healthz() -> JSONResponse:
    try:
        async with get_db().read_session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse({"status": "error", "database": repr(exc)[:300]}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def prometheus() -> PlainTextResponse:
    async with get_db().read_session() as session:
        body = await metrics.render(session)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
