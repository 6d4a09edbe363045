"""``/api/v1/routing``: the queue, who is on shift, schedules, assigning, availability."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import pytz
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from heliograph import jobs
from heliograph.db import utcnow
from inbox.assignment import queue_size
from inbox.conversations import get_conversation
from routing import assignment, history, roster
from routing.bus import DRAIN, Drain
from routing.queue import queue_entries
from routing.team import get_member
from web.api.schemas import In, Out
from web.api.types import DbId, Id
from web.deps import AgentDep, MemberDep, ReadSessionDep, SessionDep

router = APIRouter(prefix="/routing", tags=["routing"])


class QueueItemOut(BaseModel):
    conversation_id: int
    customer_id: int
    channel: str
    priority: str
    language: str | None
    topic_tags: list[str]
    waiting_since: datetime
    waited_s: float
    reason: str | None = Field(description="Why nobody could take it at the last try.")
    promised_at: datetime | None = Field(description="When we told the customer we'd answer.")
    notified_at: datetime | None


class QueueOut(BaseModel):
    count: int
    oldest_waiting_since: datetime | None
    oldest_wait_s: float | None
    conversations: list[QueueItemOut] = Field(description="Most urgent, then longest waiting.")


class OnShiftOut(BaseModel):
    id: int
    name: str
    role: str
    timezone: str
    local_time: str = Field(description="HH:MM on the member's clock.")
    local_datetime: datetime
    availability: str
    load: int
    capacity: int
    shift_ends_at: datetime | None
    languages: list[str]
    expertise: list[str]


class ShiftOut(BaseModel):
    start_local: datetime
    end_local: datetime
    start_utc: datetime
    end_utc: datetime


class ScheduleOut(BaseModel):
    member_id: int
    name: str
    timezone: str
    shifts: list[ShiftOut]


class AssignIn(In):
    member_id: DbId


class AssignmentOut(Out):
    id: int
    conversation_id: int
    member_id: int | None
    previous_member_id: int | None
    kind: str
    by_member_id: int | None
    reason: str
    at: datetime


class AvailabilityIn(In):
    availability: Literal["online", "away", "offline"]


class AvailabilityOut(Out):
    id: int
    name: str
    availability: str
    last_active_at: datetime | None


@router.get("/queue", response_model=QueueOut, summary="Conversations waiting for an agent")
async def queue(
    session: ReadSessionDep, _: MemberDep, limit: int = Query(100, ge=1, le=500)
) -> QueueOut:
    now = utcnow()
    entries = await queue_entries(session, limit)
    count, oldest = await queue_size(session)
    items = [
        QueueItemOut(
            conversation_id=e.conversation.id,  # type: ignore[arg-type]
            customer_id=e.conversation.customer_id,
            channel=e.conversation.channel,
            priority=e.conversation.priority,
            language=e.conversation.language,
            topic_tags=e.conversation.topic_tags,
            waiting_since=(since := e.conversation.waiting_since or e.conversation.created_at),
            waited_s=(now - since).total_seconds(),
            reason=e.wait.reason if e.wait else None,
            promised_at=e.wait.promised_at if e.wait else None,
            notified_at=e.wait.notified_at if e.wait else None,
        )
        for e in entries
    ]
    oldest_s = (now - oldest).total_seconds() if oldest else None
    return QueueOut(
        count=count, oldest_waiting_since=oldest, oldest_wait_s=oldest_s, conversations=items
    )


@router.get("/on-shift", response_model=list[OnShiftOut], summary="Who is on shift now")
async def on_shift(session: ReadSessionDep, _: MemberDep) -> list[OnShiftOut]:
    return [
        OnShiftOut(
            id=r.member.id,  # type: ignore[arg-type]
            name=r.member.name,
            role=r.member.role,
            timezone=r.member.timezone,
            local_time=f"{r.local_time:%H:%M}",
            local_datetime=r.local_time,
            availability=r.availability,
            load=r.load,
            capacity=r.member.capacity,
            shift_ends_at=r.shift_ends_at,
            languages=r.member.languages,
            expertise=r.member.expertise,
        )
        for r in await roster.on_shift_report(session)
    ]


@router.get("/members/{member_id}/schedule", response_model=ScheduleOut)
async def schedule(
    member_id: Id, session: ReadSessionDep, _: MemberDep, days: int = Query(7, ge=1, le=31)
) -> ScheduleOut:
    """The member's shifts from now for ``days`` days, in their local time and in UTC."""
    member = await get_member(session, member_id)
    tz = pytz.timezone(member.timezone or "UTC")
    shifts = [
        ShiftOut(
            start_local=s.start.astimezone(tz),
            end_local=s.end.astimezone(tz),
            start_utc=s.start,
            end_utc=s.end,
        )
        for s in roster.coming_shifts(member, utcnow(), days)
    ]
    return ScheduleOut(
        member_id=member_id, name=member.name, timezone=member.timezone, shifts=shifts
    )


@router.post("/conversations/{conversation_id}/assign", response_model=AssignmentOut)
async def assign(
    conversation_id: Id, body: AssignIn, session: SessionDep, actor: AgentDep
) -> object:
    """Leads and admins assign anyone; agents claim unassigned conversations for
    themselves while under capacity (409 says why not)."""
    row = await assignment.assign_to(session, conversation_id, body.member_id, actor)
    await session.commit()
    if row is None:  # already theirs: the assignment that made it so
        past = await history.history(session, conversation_id)
        if not past:
            raise assignment.AssignmentRefused("the conversation is already assigned to them")
        row = past[-1]
    jobs.wake_workers()
    return row


@router.get(
    "/conversations/{conversation_id}/assignments",
    response_model=list[AssignmentOut],
    summary="Who held the conversation, when, and why",
)
async def assignments(conversation_id: Id, session: ReadSessionDep, _: MemberDep) -> list[object]:
    await get_conversation(session, conversation_id)
    return await history.history(session, conversation_id)  # type: ignore[return-value]


@router.patch("/me/availability", response_model=AvailabilityOut)
async def availability(body: AvailabilityIn, session: SessionDep, member: MemberDep) -> object:
    """Online, away or offline; coming online drains the queue right away."""
    updated = await assignment.set_availability(session, member.id, body.availability)  # type: ignore[arg-type]
    if body.availability == "online":
        await jobs.enqueue(session, DRAIN, Drain(reason=f"{member.name} came online"))
    await session.commit()
    jobs.wake_workers()
    return updated
