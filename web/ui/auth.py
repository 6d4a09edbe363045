"""Web app pages: signing in and out, invites, the member's own settings (issue #16).

Sign-in is email and password (Argon2, routing.credentials). Failed sign-ins are limited
per email and per client address (HELIOGRAPH_WEB_SIGN_IN_LIMIT) and answered 429; an
unknown email and a wrong password get the same answer (no account enumeration). ``next``
only ever leads to a path of this site.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from heliograph import ratelimit
from heliograph.db import get_db
from routing import credentials
from routing.reads import member as member_by_id
from web.ui.render import LANGUAGES, N_, page
from web.ui.session import CsrfDep, UiAdminDep, UiMemberDep, end_session, start_session
from web.ui.settings import WebSettings

router = APIRouter(include_in_schema=False)
THEMES = ("system", "light", "dark")
SIGN_IN_LIMIT = "web_sign_in"
ratelimit.declare(SIGN_IN_LIMIT, lambda: WebSettings.get().web_sign_in_limit)


def _keys(request: Request, email: str) -> list[str]:
    ip = request.client.host if request.client else "unknown"
    return [f"email:{email.strip().lower()}", f"ip:{ip}"]


async def _retry_after(request: Request, email: str) -> int | None:
    """Seconds until this email and address may try again; None: they may now."""
    for key in _keys(request, email):
        try:
            await ratelimit.check(SIGN_IN_LIMIT, key)
        except ratelimit.RateLimited as refused:
            return refused.retry_after
    return None


async def _failed(request: Request, email: str) -> None:
    for key in _keys(request, email):
        await ratelimit.record(SIGN_IN_LIMIT, key)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(c in target for c in "\r\n\\"):
        return "/"
    return target


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str = "/") -> Response:
    return page(request, "sign_in.html", None, next=safe_next(next), email="", error=None)


@router.post("/sign-in", dependencies=[CsrfDep])
async def sign_in(
    request: Request,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    target = safe_next(next)
    wait = await _retry_after(request, email)
    if wait is not None:
        minutes = ratelimit.minutes(wait)
        return page(
            request,
            "sign_in.html",
            None,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            next=target,
            email=email,
            error="too_many",
            minutes=minutes,
        )
    async with get_db().session() as session:
        member = await credentials.authenticate(session, email, password)
        if member is not None:
            await session.commit()  # a rehash, if the parameters changed
    if member is None:
        await _failed(request, email)
        return page(
            request,
            "sign_in.html",
            None,
            status_code=status.HTTP_401_UNAUTHORIZED,
            next=target,
            email=email,
            error="wrong",
        )
    start_session(request, member)
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/sign-out", dependencies=[CsrfDep])
async def sign_out(request: Request) -> Response:
    end_session(request)
    return RedirectResponse("/sign-in", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/invite/{token}", response_class=HTMLResponse)
async def invite_page(request: Request, token: str) -> Response:
    async with get_db().read_session() as session:
        member = await credentials.invite_member(session, token)
    if member is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, N_("This invite link is used or expired."))
    return page(request, "invite.html", None, invitee=member, token=token, error=None)


@router.post("/invite/{token}", dependencies=[CsrfDep])
async def invite_accept(
    request: Request,
    token: str,
    password: Annotated[str, Form()],
    password_again: Annotated[str, Form()],
) -> Response:
    async with get_db().session() as session:
        invitee = await credentials.invite_member(session, token)
        if invitee is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, N_("This invite link is used or expired.")
            )
        error = None
        if password != password_again:
            error = "mismatch"
        elif len(password) < credentials.MIN_PASSWORD:
            error = "short"
        if error:
            return page(
                request,
                "invite.html",
                None,
                status_code=422,
                invitee=invitee,
                token=token,
                error=error,
                min_length=credentials.MIN_PASSWORD,
            )
        member = await credentials.accept_invite(session, token, password)
        await session.commit()
    assert member is not None
    start_session(request, member)
    return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/me", response_class=HTMLResponse)
async def me_page(request: Request, member: UiMemberDep) -> Response:
    return page(request, "me.html", member, themes=THEMES, saved=False)


@router.post("/me", dependencies=[CsrfDep])
async def me_save(
    request: Request,
    member: UiMemberDep,
    language: Annotated[str, Form()] = "",
    theme: Annotated[str, Form()] = "system",
) -> Response:
    if (language and language not in LANGUAGES) or theme not in THEMES:
        raise HTTPException(422, N_("Unknown language or theme."))
    async with get_db().session() as session:
        mine = await member_by_id(session, member.id)
        assert mine is not None
        await credentials.set_preferences(session, mine, language=language or None, theme=theme)
        await session.commit()
        await session.refresh(mine)
    return page(request, "me.html", mine, themes=THEMES, saved=True)


@router.get("/team/invites", response_class=HTMLResponse)
async def invites_page(request: Request, member: UiAdminDep) -> Response:
    async with get_db().read_session() as session:
        pending = await credentials.pending_invites(session)
    return page(request, "team_invites.html", member, pending=pending, url=None, error=None)


@router.post("/team/invites", dependencies=[CsrfDep])
async def invites_create(
    request: Request, member: UiAdminDep, email: Annotated[str, Form()]
) -> Response:
    async with get_db().session() as session:
        invitee = await credentials.member_by_email(session, email)
        url = error = None
        if invitee is None or not invitee.active:
            error = "unknown"
        else:
            token = await credentials.create_invite(session, invitee, created_by=member.id)
            await session.commit()
            url = invite_url(str(request.base_url), token)
        pending = await credentials.pending_invites(session)
    return page(
        request,
        "team_invites.html",
        member,
        status_code=200 if url else 422,
        pending=pending,
        url=url,
        error=error,
    )


def invite_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/invite/{token}"
