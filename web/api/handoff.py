"""``/api/v1``: hand a conversation over, acknowledge a handoff, handoff history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from handoff import service
from heliograph import jobs
from inbox.conversations import get_conversation
from web.api.schemas import In, Out
from web.api.types import DbId, Id
from web.deps import AgentDep, MemberDep, ReadSessionDep, SessionDep

router = APIRouter(tags=["handoff"])


class HandoffIn(In):
    to_member_id: DbId | None = Field(
        default=None,
        description="A person; left out: whoever is best eligible now, else next on shift.",
    )
    note: str | None = Field(
        default=None, max_length=4000, description="A private note for the receiver."
    )


class HandoffOut(Out):
    id: int
    conversation_id: int
    from_member_id: int | None
    to_member_id: int | None
    kind: str
    reason: str
    state: str
    context: dict[str, Any]
    created_at: datetime
    acknowledged_at: datetime | None
    escalated_at: datetime | None
    ack_s: float | None = Field(default=None, description="Seconds until it was acknowledged.")


def _out(row: Any) -> HandoffOut:
    out = HandoffOut.model_validate(row)
    if row.acknowledged_at is not None:
        ack = row.acknowledged_at.replace(tzinfo=row.acknowledged_at.tzinfo or UTC)
        created = row.created_at.replace(tzinfo=row.created_at.tzinfo or UTC)
        out.ack_s = (ack - created).total_seconds()
    return out


async def _found(coro: Any) -> Any:
    try:
        return await coro
    except service.HandoffNotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@router.post("/conversations/{conversation_id}/handoff", response_model=HandoffOut)
async def hand_over(
    conversation_id: Id, body: HandoffIn, session: SessionDep, actor: AgentDep
) -> HandoffOut:
    """Agents hand over their own conversations, leads any (409 says why not)."""
    row = await service.handoff_manual(
        session, conversation_id, actor, to_member_id=body.to_member_id, note=body.note
    )
    await session.commit()
    jobs.wake_workers()
    return _out(row)


@router.post("/handoffs/{handoff_id}/ack", response_model=HandoffOut)
async def acknowledge(handoff_id: Id, session: SessionDep, member: MemberDep) -> HandoffOut:
    """The receiver has it: stops the escalation clock."""
    row = await _found(service.acknowledge(session, handoff_id, member))
    await session.commit()
    return _out(row)


@router.get("/conversations/{conversation_id}/handoffs", response_model=list[HandoffOut])
async def conversation_handoffs(
    conversation_id: Id, session: ReadSessionDep, _: MemberDep
) -> list[HandoffOut]:
    await get_conversation(session, conversation_id)
    return [_out(r) for r in await service.handoffs_of(session, conversation_id)]


@router.get("/handoffs", response_model=list[HandoffOut])
async def handoffs(
    session: ReadSessionDep,
    _: MemberDep,
    state: Literal["pending", "acknowledged", "escalated"] | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> list[HandoffOut]:
    return [_out(r) for r in await service.list_handoffs(session, state, limit)]
