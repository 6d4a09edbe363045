"""The web app's settings (HELIOGRAPH_WEB_*)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from heliograph.settings import Section


class WebSettings(Section):
    """The browser app: its sign-in sessions and their limits."""

    secret_fields: ClassVar[tuple[str, ...]] = ("web_session_secret",)

    web_session_secret: str = Field(
        default="",
        description=(
            "Signs the session cookie. Empty: a random key per process (sessions then end "
            "with a restart and are not shared by several processes: set it in production)."
        ),
    )
    web_session_max_age_s: int = Field(
        default=12 * 3600, ge=300, description="A sign-in lasts this long (seconds)."
    )
    web_cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie over https only (on behind an https proxy).",
    )
    web_sign_in_limit: str = Field(
        default="5/minute;20/hour",
        description=(
            "Failed sign-ins allowed per email and per client address (limits syntax), counted"
            " in HELIOGRAPH_RATE_LIMIT_STORAGE like the other limits."
        ),
    )


def demo_env() -> dict[str, str]:
    return {"HELIOGRAPH_WEB_SESSION_SECRET": "demo-web-session-secret-0123456789"}
