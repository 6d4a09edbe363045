"""``/healthz`` (database reachable) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from heliograph import jobs
from heliograph.db import get_db
from heliograph.settings import get_settings
from routing.bus import ROUTE
from web import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness, database and routing backlog check")
async def healthz() -> JSONResponse:
    """503 when the database cannot be reached; ``degraded`` (still 200: the process
    serves, but customers wait) when the oldest due routing job has waited longer than
    ``health_job_age_s``."""
    try:
        async with get_db().read_session() as session:
            await session.execute(text("SELECT 1"))
            backlog = {b.kind: b for b in await jobs.backlog_by_kind(session)}
    except Exception as exc:
        return JSONResponse({"status": "error", "database": repr(exc)[:300]}, status_code=503)
    bound = get_settings().health_job_age_s
    routing = backlog.get(ROUTE.name)
    waited = routing.oldest_due_s if routing is not None else 0.0
    body: dict[str, object] = {
        "status": "ok",
        "database": "ok",
        "routing": {"due": routing.due if routing else 0, "oldest_due_s": round(waited, 3)},
    }
    if waited > bound:
        body["status"] = "degraded"
        body["reason"] = (
            f"the oldest routing job has waited {waited:.0f} s (bound {bound:.0f} s): "
            "new conversations reach agents late"
        )
    return JSONResponse(body)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def prometheus() -> PlainTextResponse:
    async with get_db().read_session() as session:
        body = await metrics.render(session)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
