"""``/api/v1/jobs``: the operator's view of dead jobs, and retrying them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from heliograph import jobs
from web.api.schemas import JobOut
from web.api.types import Id
from web.deps import AdminDep, SessionDep

router = APIRouter(prefix="/jobs", tags=["operations"])


@router.get("/dead", response_model=list[JobOut], summary="Jobs that ran out of retries")
async def dead(session: SessionDep, _: AdminDep) -> list[object]:
    return await jobs.dead_jobs(session)  # type: ignore[return-value]


@router.post("/{job_id}/retry", summary="Queue a dead job again with fresh attempts")
async def retry(job_id: Id, session: SessionDep, _: AdminDep) -> dict[str, object]:
    if not await jobs.retry_dead(session, job_id):
        raise HTTPException(404, f"job {job_id} is not a dead job")
    await session.commit()
    jobs.wake_workers()
    return {"job_id": job_id, "status": "pending"}
