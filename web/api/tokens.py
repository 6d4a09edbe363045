"""``/api/v1/tokens``: admins see every API token, issue one for a member, and revoke one.

The secret is in the answer to ``POST`` only (it is stored as its SHA-256); listings
show who holds each token, its label, and when it was made, last used, expires and was
revoked. A revoked token is refused from its next request on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from routing.models import ApiToken, TeamMember
from routing.team import get_member
from routing.tokens import (
    MAX_TOKEN_DAYS,
    AccessError,
    TokenNotFound,
    find_token,
    issue_token,
    list_tokens,
    revoke_token,
)
from web.api.schemas import In
from web.api.types import MAX_ID, Id
from web.deps import AdminDep, ReadSessionDep, SessionDep

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenOut(BaseModel):
    id: int
    member_id: int
    member_name: str
    member_email: str
    label: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="to within a minute")
    expires_at: datetime | None = Field(description="null: until revoked")
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken, member: TeamMember) -> TokenOut:
        return cls(
            id=token.id,  # type: ignore[arg-type]
            member_id=token.member_id,
            member_name=member.name,
            member_email=member.email,
            label=token.label,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown this once, stored only as its SHA-256.")


class TokenIn(In):
    member_id: int = Field(ge=1, le=MAX_ID)
    label: str = Field(default="", max_length=100)
    expires_in_days: int | None = Field(
        default=None, ge=1, le=MAX_TOKEN_DAYS, description="null: until revoked"
    )


@router.get("", response_model=list[TokenOut], summary="Every API token (never the secret)")
async def list_(
    session: ReadSessionDep,
    _: AdminDep,
    member_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="one member's")] = None,
) -> list[TokenOut]:
    return [TokenOut.of(t, m) for t, m in await list_tokens(session, member_id)]


@router.post("", response_model=TokenCreated, status_code=201, summary="Issue a token")
async def create(body: TokenIn, session: SessionDep, admin: AdminDep) -> TokenCreated:
    member = await get_member(session, body.member_id)
    try:
        token, secret = await issue_token(
            session,
            member,
            body.label,
            expires_in_days=body.expires_in_days,
            actor=f"member:{admin.id}",
        )
    except AccessError as exc:
        raise HTTPException(409, str(exc)) from exc
    await session.commit()
    return TokenCreated(**TokenOut.of(token, member).model_dump(), token=secret)


async def _revoke(token_id: int, session: SessionDep, admin: TeamMember) -> TokenOut:
    try:
        await revoke_token(session, token_id, actor=f"member:{admin.id}")
        token = await find_token(session, token_id)
    except TokenNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    await session.commit()
    return TokenOut.of(token, await get_member(session, token.member_id))


@router.delete("/{token_id}", response_model=TokenOut, summary="Revoke a token")
async def delete(token_id: Id, session: SessionDep, admin: AdminDep) -> TokenOut:
    """Refused from its next request on; revoking again changes nothing."""
    return await _revoke(token_id, session, admin)


@router.post("/{token_id}/revoke", response_model=TokenOut, summary="Revoke a token")
async def revoke(token_id: Id, session: SessionDep, admin: AdminDep) -> TokenOut:
    """The same as ``DELETE /tokens/{token_id}``, for clients that cannot send DELETE."""
    return await _revoke(token_id, session, admin)
