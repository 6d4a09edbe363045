"""Request dependencies: sessions, the authenticated member, role checks.

(A webhook's raw body is read by its channel's routes: ``channels.base.Hook``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import get_db
from routing.models import TeamMember
from routing.tokens import TokenRefused, check_token
from web.token_use import USED_TOKEN


async def _session() -> AsyncIterator[AsyncSession]:
    async with get_db().session() as session:
        yield session


async def _read_session() -> AsyncIterator[AsyncSession]:
    async with get_db().read_session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]

_bearer = HTTPBearer(auto_error=False)


async def current_member(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TeamMember:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer hg_...; `heliograph create-token EMAIL`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        async with get_db().read_session() as session:
            member, token = await check_token(session, credentials.credentials)
    except TokenRefused as exc:  # unknown, revoked, expired, or its member deactivated
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc
    # Its last use is written once the request is over (``web.token_use``).
    setattr(request.state, USED_TOKEN, token)
    return member


MemberDep = Annotated[TeamMember, Depends(current_member)]

WRITE_ROLES = ("agent", "lead", "admin")


def require_role(*roles: str):  # type: ignore[no-untyped-def]
    """A dependency that lets only these roles through (403 with the reason otherwise)."""

    async def check(member: MemberDep) -> TeamMember:
        return allowed(member, roles)

    return check


def allowed(member: TeamMember, roles: tuple[str, ...]) -> TeamMember:
    """``member`` when their role is one of ``roles``; 403 with the reason otherwise (the
    API's and the web app's one rule)."""
    if member.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this needs the role {' or '.join(roles)}; you are {member.role}",
        )
    return member


AgentDep = Annotated[TeamMember, Depends(require_role(*WRITE_ROLES))]
LeadDep = Annotated[TeamMember, Depends(require_role("lead", "admin"))]
AdminDep = Annotated[TeamMember, Depends(require_role("admin"))]
