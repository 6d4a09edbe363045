"""What the web app's forms share: a refusal with its reason, and a member picked from a list."""

from __future__ import annotations

from fastapi import HTTPException

from web.ui.render import N_

PICK_A_MEMBER = N_("Pick a member from the list")


class Refused(HTTPException):
    """A form the page refuses (409, 422) with the reason to show. A page that can show
    the reason beside what was typed catches it (the conversation's actions); anywhere
    else it is the error page, like any ``HTTPException``."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(status_code, reason)


def member_choice(value: str) -> int | None:
    """A member id from a form's list: empty is nobody in particular; anything but digits
    is refused (422)."""
    if not value.strip():
        return None
    if not value.strip().isdigit():
        raise Refused(422, PICK_A_MEMBER)
    return int(value)
