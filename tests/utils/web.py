"""The web app in tests: a client signed in as a member, the way a browser would be.

``signed_in(client, member_id)`` gives the client the session cookie that
``web.ui.session.start_session`` would have set (Starlette's format: base64 JSON signed
with itsdangerous under HELIOGRAPH_WEB_SESSION_SECRET, which conftest sets to
``WEB_SESSION_SECRET``), and returns the session's CSRF token for forms and htmx posts,
masked as a page would hold it (``web.ui.session.mask_csrf``).
"""

from __future__ import annotations

import base64
import json
import secrets

import httpx
from itsdangerous import TimestampSigner

from web.ui.session import mask_csrf
from web.ui.sessions import COOKIE

WEB_SESSION_SECRET = "test-web-session-secret-4f1c9a"


def session_cookie(member_id: int, csrf: str, secret: str = WEB_SESSION_SECRET) -> str:
    data = base64.b64encode(json.dumps({"member_id": member_id, "csrf": csrf}).encode())
    return TimestampSigner(secret).sign(data).decode()


def signed_in(client: httpx.AsyncClient, member_id: int) -> str:
    """Sign ``client`` in as the member; the CSRF token to send back (masked)."""
    csrf = secrets.token_urlsafe(16)
    client.cookies.set(COOKIE, session_cookie(member_id, csrf))
    return mask_csrf(csrf)
