"""Web app pages: canned responses (issue #16).

``/canned`` lists the team's canned responses and the member's own, with forms to create,
edit and delete them (the same ``inbox.canned`` functions as the REST API).
``/canned/suggest?conversation_id=&q=`` is the composer's fragment: the matches for the
text after "/", each ``<li>`` carrying ``data-fill`` (the text filled for that conversation).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from heliograph import texts
from inbox import canned
from inbox.conversations import InvalidRequest
from web.deps import SessionDep
from web.ui.render import N_, page
from web.ui.session import CsrfDep, UiMemberDep

router = APIRouter(include_in_schema=False)
ERRORS = (canned.CannedNotFound, canned.CannedForbidden, InvalidRequest)


async def _page(
    request: Request,
    session: Any,
    member: Any,
    *,
    editing: Any = None,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    rows = await canned.list_for(session, member)
    return page(
        request,
        "canned.html",
        member,
        status_code=status_code,
        rows=rows,
        editing=editing,
        error=error,
        form=form or {},
        may_team=member.role in canned.TEAM_ROLES,
    )


@router.get("/canned", response_class=HTMLResponse)
async def canned_list(request: Request, member: UiMemberDep, session: SessionDep) -> Response:
    return await _page(request, session, member)


@router.get("/canned/suggest", response_class=HTMLResponse)
async def canned_suggest(
    request: Request,
    member: UiMemberDep,
    session: SessionDep,
    conversation_id: int = Query(),
    q: str = Query(default=""),
) -> Response:
    """The composer's list: up to 8 matches, filled for the conversation's customer."""
    customer, language = await canned.customer_of(session, conversation_id)
    rows = await canned.search(session, member, q, limit=8, language=language)
    items = [{"row": row, "filled": canned.fill_report(row.text, customer, member)} for row in rows]
    return page(request, "canned_suggest.html", member, items=items, q=q)


@router.get("/canned/{canned_id}/edit", response_class=HTMLResponse)
async def canned_edit(
    canned_id: int, request: Request, member: UiMemberDep, session: SessionDep
) -> Response:
    try:
        row = await canned.get(session, member, canned_id)
    except canned.CannedNotFound:
        return await _page(
            request, session, member, error=N_("No such canned response."), status_code=404
        )
    return await _page(request, session, member, editing=row)


def _form(shortcut: str, title: str, text: str, language: str, team: str | None) -> dict[str, Any]:
    return {
        "shortcut": shortcut,
        "title": title,
        "text": text,
        "language": language,
        "team": bool(team),
    }


def _status(exc: Exception) -> int:
    if isinstance(exc, canned.CannedNotFound):
        return 404
    if isinstance(exc, canned.CannedForbidden):
        return 403
    return 422


@router.post("/canned", response_class=HTMLResponse, dependencies=[CsrfDep])
async def canned_create(
    request: Request,
    member: UiMemberDep,
    session: SessionDep,
    shortcut: str = Form(""),
    title: str = Form(""),
    text: str = Form(""),
    language: str = Form(""),
    team: str | None = Form(None),
) -> Response:
    form = _form(shortcut, title, text, language, team)
    try:
        await canned.create(
            session,
            member,
            shortcut=shortcut,
            title=title,
            text=text,
            language=language or None,
            team=bool(team),
        )
    except ERRORS as exc:
        await session.rollback()
        return await _page(
            request, session, member, error=texts.message(exc), form=form, status_code=_status(exc)
        )
    await session.commit()
    return RedirectResponse("/canned", status_code=303)


@router.post("/canned/{canned_id}", response_class=HTMLResponse, dependencies=[CsrfDep])
async def canned_update(
    canned_id: int,
    request: Request,
    member: UiMemberDep,
    session: SessionDep,
    shortcut: str = Form(""),
    title: str = Form(""),
    text: str = Form(""),
    language: str = Form(""),
) -> Response:
    try:
        await canned.update(
            session,
            member,
            canned_id,
            shortcut=shortcut,
            title=title,
            text=text,
            language=language or None,
            set_language=True,
        )
    except ERRORS as exc:
        await session.rollback()
        editing = None
        try:
            editing = await canned.get(session, member, canned_id)
        except canned.CannedNotFound:
            pass
        return await _page(
            request,
            session,
            member,
            editing=editing,
            error=texts.message(exc),
            status_code=_status(exc),
        )
    await session.commit()
    return RedirectResponse("/canned", status_code=303)


@router.post("/canned/{canned_id}/delete", response_class=HTMLResponse, dependencies=[CsrfDep])
async def canned_delete(
    canned_id: int, request: Request, member: UiMemberDep, session: SessionDep
) -> Response:
    try:
        await canned.delete(session, member, canned_id)
    except ERRORS as exc:
        await session.rollback()
        return await _page(
            request, session, member, error=texts.message(exc), status_code=_status(exc)
        )
    await session.commit()
    return RedirectResponse("/canned", status_code=303)
