"""The web app's session cookie (Starlette's ``SessionMiddleware``, signed with itsdangerous)."""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from web.ui.settings import WebSettings

log = logging.getLogger(__name__)
COOKIE = "heliograph_session"


def add_sessions(app: FastAPI) -> None:
    settings = WebSettings.get()
    secret = settings.web_session_secret
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.warning(
            "HELIOGRAPH_WEB_SESSION_SECRET is not set: web sessions use a key of this process "
            "only (they end with a restart and are not shared by several processes)"
        )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=COOKIE,
        max_age=settings.web_session_max_age_s,
        same_site="lax",
        https_only=settings.web_cookie_secure,
    )
