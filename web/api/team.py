"""``/api/v1/team-members``: who answers."""

from __future__ import annotations

from fastapi import APIRouter

from routing import team
from web.api.schemas import TeamMemberOut
from web.deps import MemberDep, ReadSessionDep

router = APIRouter(prefix="/team-members", tags=["team"])


@router.get("", response_model=list[TeamMemberOut])
async def list_(session: ReadSessionDep, _: MemberDep) -> list[object]:
    return await team.list_members(session)  # type: ignore[return-value]


@router.get("/me", response_model=TeamMemberOut)
async def me(member: MemberDep) -> object:
    return member


@router.get("/{member_id}", response_model=TeamMemberOut)
async def get(member_id: int, session: ReadSessionDep, _: MemberDep) -> object:
    return await team.get_member(session, member_id)
