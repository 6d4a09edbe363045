"""Who is signed in to the web app, and the CSRF token of their session.

The session is Starlette's ``SessionMiddleware``: a cookie signed with
HELIOGRAPH_WEB_SESSION_SECRET (itsdangerous), HttpOnly, SameSite=Lax, holding the member's
id, the member's session version (a password change or deactivation ends every session)
and the CSRF token. Every form and every htmx request sends that token back
(``csrf_token`` field or ``X-CSRF-Token`` header); ``CsrfDep`` refuses an unsafe request
without it (403). The same roles as the API apply (``web.deps.require_role``'s rule).

Pages are sent gzip-compressed, and a page both holds the token and reflects what the
viewer typed (the search box): BREACH could recover the token from the compressed sizes.
So a page never holds the token itself but a masked one, fresh for every render (as
Django does): a random pad and the token XOR the pad, base64url-encoded together;
``check_csrf`` unmasks what it is sent and compares in constant time. The bare token (or
one masked by someone who does not know it) is refused.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status

from heliograph.db import get_db
from routing import reads as team_reads
from routing.models import TeamMember
from web.deps import allowed

MEMBER_KEY = "member_id"
CSRF_KEY = "csrf"
VERSION_KEY = "sv"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """No (valid) session: the browser is sent to the sign-in page (303), then back."""

    def __init__(self, next_url: str = "/") -> None:
        super().__init__("sign in first")
        self.next_url = next_url


def sign_in_url(next_url: str) -> str:
    return f"/sign-in?next={quote(next_url, safe='/')}"


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get(CSRF_KEY)
    if not token:
        token = request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return str(token)


def mask_csrf(token: str) -> str:
    """``token`` masked with a fresh random pad: ``base64url(pad + token XOR pad)``."""
    raw = token.encode()
    pad = secrets.token_bytes(len(raw))
    cipher = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    return base64.urlsafe_b64encode(pad + cipher).decode().rstrip("=")


def unmask_csrf(masked: str) -> bytes | None:
    """The token inside a masked value; None when it is not one (bad base64, odd length)."""
    if not masked or len(masked) > 512:
        return None
    try:
        both = base64.urlsafe_b64decode(masked + "=" * (-len(masked) % 4))
    except (binascii.Error, ValueError):
        return None
    half, odd = divmod(len(both), 2)
    if odd or not half:
        return None
    return bytes(a ^ b for a, b in zip(both[:half], both[half:], strict=True))


def masked_csrf_token(request: Request) -> str:
    """What a page holds: this session's CSRF token, masked afresh for this render."""
    return mask_csrf(csrf_token(request))


def start_session(request: Request, member: TeamMember) -> None:
    """Sign ``member`` in: a fresh session (a new CSRF token too: no fixation)."""
    request.session.clear()
    request.session[MEMBER_KEY] = member.id
    request.session[VERSION_KEY] = member.session_version or 0
    csrf_token(request)


def end_session(request: Request) -> None:
    request.session.clear()


async def ui_member(request: Request) -> TeamMember:
    """The signed-in, active member; else ``SignInRequired`` (a redirect to sign in)."""
    member_id = request.session.get(MEMBER_KEY)
    member = None
    if isinstance(member_id, int):
        async with get_db().read_session() as session:
            member = await team_reads.member(session, member_id)
    version = request.session.get(VERSION_KEY, 0)
    if member is None or not member.active or version != (member.session_version or 0):
        request.session.clear()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    request.state.member = member
    return member


async def signed_in_member(request: Request) -> TeamMember | None:
    """The member a page that needs no sign-in (an error page) is shown to: theirs if the
    session holds one, else None (signed out)."""
    member = getattr(request.state, "member", None)
    if member is not None or "session" not in request.scope:
        return member
    try:
        return await ui_member(request)
    except SignInRequired:
        return None


UiMemberDep = Annotated[TeamMember, Depends(ui_member)]


def ui_role(*roles: str):  # type: ignore[no-untyped-def]
    """Only these roles (403 with the reason otherwise), as the API's ``require_role``."""

    async def check(member: UiMemberDep) -> TeamMember:
        return allowed(member, roles)

    return check


UiAgentDep = Annotated[TeamMember, Depends(ui_role("agent", "lead", "admin"))]
UiLeadDep = Annotated[TeamMember, Depends(ui_role("lead", "admin"))]
UiAdminDep = Annotated[TeamMember, Depends(ui_role("admin"))]


async def check_csrf(request: Request) -> None:
    """403 for an unsafe request whose CSRF token (header or form field), unmasked, is not the
    session's."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = request.session.get(CSRF_KEY)
    given = request.headers.get(CSRF_HEADER)
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = (await request.form()).get(CSRF_FIELD)
    unmasked = unmask_csrf(given) if isinstance(given, str) else None
    if (
        not expected
        or unmasked is None
        or not secrets.compare_digest(unmasked, str(expected).encode())
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the form has expired or did not come from this site"
        )


CsrfDep = Depends(check_csrf)
