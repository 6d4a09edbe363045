"""``/api/v1/team-members``: who answers, and (admins) taking access away and giving it back."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from heliograph import jobs
from inbox.assignment import open_conversations_of
from routing import team
from web.api.schemas import TeamMemberOut
from web.api.types import Id
from web.deps import AdminDep, MemberDep, ReadSessionDep, SessionDep

router = APIRouter(prefix="/team-members", tags=["team"])


class AccessOut(BaseModel):
    member: TeamMemberOut
    changed: bool = Field(description="false: the member was so already; nothing changed")
    open_conversations: int = Field(
        description="deactivation: how many of theirs go back to the queue (within seconds)"
    )


@router.get("", response_model=list[TeamMemberOut])
async def list_(session: ReadSessionDep, _: MemberDep) -> list[object]:
    return await team.list_members(session)  # type: ignore[return-value]


@router.get("/me", response_model=TeamMemberOut)
async def me(member: MemberDep) -> object:
    return member


@router.get("/{member_id}", response_model=TeamMemberOut)
async def get(member_id: Id, session: ReadSessionDep, _: MemberDep) -> object:
    return await team.get_member(session, member_id)


@router.post("/{member_id}/deactivate", response_model=AccessOut)
async def deactivate(member_id: Id, session: SessionDep, admin: AdminDep) -> AccessOut:
    """Their tokens, Slack and Telegram are refused from their next request on, routing
    passes them over, and their open conversations go back to the queue (and on to
    whoever is eligible). Undo with ``/activate``."""
    member = await team.get_member(session, member_id)
    if member.id == admin.id:
        raise HTTPException(409, "you cannot deactivate yourself; ask another admin")
    held = len(await open_conversations_of(session, member_id))
    changed = await team.set_active(session, member, False, f"member:{admin.id}")
    await session.commit()
    jobs.wake_workers()
    return AccessOut(
        member=TeamMemberOut.model_validate(member), changed=changed, open_conversations=held
    )


@router.post("/{member_id}/activate", response_model=AccessOut)
async def activate(member_id: Id, session: SessionDep, admin: AdminDep) -> AccessOut:
    """Access back: their tokens (unless revoked or expired) and linked chats work again."""
    member = await team.get_member(session, member_id)
    changed = await team.set_active(session, member, True, f"member:{admin.id}")
    await session.commit()
    held = len(await open_conversations_of(session, member_id))
    return AccessOut(
        member=TeamMemberOut.model_validate(member), changed=changed, open_conversations=held
    )
