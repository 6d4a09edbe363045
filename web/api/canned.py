"""``/api/v1/canned-responses``: saved replies, team-wide (leads and admins) or personal."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import Field

from inbox import canned
from inbox.conversations import InvalidRequest
from web.api.schemas import In, Out
from web.api.types import Id
from web.deps import MemberDep, SessionDep

router = APIRouter(prefix="/canned-responses", tags=["canned responses"])


class CannedIn(In):
    shortcut: str = Field(max_length=64, description="typed after '/', e.g. 'refund'")
    title: str = Field(max_length=200)
    text: str = Field(
        max_length=20000,
        description="may hold {{customer.first_name}}, {{customer.name}}, {{customer.email}}, "
        "{{agent.name}}, {{agent.first_name}}",
    )
    language: str | None = Field(default=None, max_length=16, description="null: any language")
    team: bool = Field(default=False, description="team-wide (leads and admins) or personal")


class CannedPatch(In):
    shortcut: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, max_length=20000)
    language: str | None = Field(default=None, max_length=16)


class CannedOut(Out):
    id: int
    shortcut: str
    title: str
    text: str
    language: str | None
    team: bool
    owner_member_id: int | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime


def _out(row: object) -> CannedOut:
    return CannedOut(
        id=row.id,  # type: ignore[attr-defined]
        shortcut=row.shortcut,  # type: ignore[attr-defined]
        title=row.title,  # type: ignore[attr-defined]
        text=row.text,  # type: ignore[attr-defined]
        language=row.language,  # type: ignore[attr-defined]
        team=row.owner_member_id is None,  # type: ignore[attr-defined]
        owner_member_id=row.owner_member_id,  # type: ignore[attr-defined]
        created_by=row.created_by,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        updated_at=row.updated_at,  # type: ignore[attr-defined]
    )


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, canned.CannedNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, canned.CannedForbidden):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(exc))
    return HTTPException(422, str(exc))


ERRORS = (canned.CannedNotFound, canned.CannedForbidden, InvalidRequest)


@router.get("", response_model=list[CannedOut])
async def list_canned(session: SessionDep, member: MemberDep, q: str | None = None) -> object:
    """The team's canned responses and your own; ``q`` searches shortcut, title and text."""
    rows = (
        await canned.search(session, member, q, limit=50)
        if q
        else await canned.list_for(session, member)
    )
    return [_out(r) for r in rows]


@router.post("", response_model=CannedOut, status_code=status.HTTP_201_CREATED)
async def create_canned(body: CannedIn, session: SessionDep, member: MemberDep) -> object:
    try:
        row = await canned.create(session, member, **body.model_dump())
    except ERRORS as exc:
        raise _http(exc) from exc
    await session.commit()
    return _out(row)


@router.get("/{canned_id}", response_model=CannedOut)
async def get_canned(canned_id: Id, session: SessionDep, member: MemberDep) -> object:
    try:
        return _out(await canned.get(session, member, canned_id))
    except ERRORS as exc:
        raise _http(exc) from exc


@router.patch("/{canned_id}", response_model=CannedOut)
async def update_canned(
    canned_id: Id, body: CannedPatch, session: SessionDep, member: MemberDep
) -> object:
    """Only the fields sent change; ``"language": null`` means any language."""
    fields = body.model_dump(exclude_unset=True)
    try:
        row = await canned.update(
            session, member, canned_id, set_language="language" in fields, **fields
        )
    except ERRORS as exc:
        raise _http(exc) from exc
    await session.commit()
    return _out(row)


@router.delete("/{canned_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_canned(canned_id: Id, session: SessionDep, member: MemberDep) -> Response:
    try:
        await canned.delete(session, member, canned_id)
    except ERRORS as exc:
        raise _http(exc) from exc
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
