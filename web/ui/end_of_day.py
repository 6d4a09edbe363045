"""Web app page: "End my day" (issue #16, PRODUCT.md's global handoff).

``/end-of-day`` lists the member's open conversations with, for each, whom the handoff
would give it to now (``handoff.propose``, as a shift end decides: routing's pick among
those on shift, never the member, else the queue) and the context package the receiver
will get. One button hands them all over with ``handoff.handoff_shift_end``, the function
the scheduler's shift-end pass uses, so each receiver gets the same notice as at a shift
end. An agent ends only their own day; a lead or an admin may end another member's
(``?member_id=``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_core.identity import get_customer
from handoff import service as handoff
from handoff.context import build_context_packages
from heliograph import jobs
from heliograph.db import utcnow
from inbox.assignment import open_conversations_of
from routing.models import TeamMember
from routing.team import MemberNotFound, get_member
from web.deps import ReadSessionDep, SessionDep
from web.ui.forms import member_choice
from web.ui.render import N_, page
from web.ui.session import CsrfDep, UiAgentDep

router = APIRouter(include_in_schema=False)

LEADS = ("lead", "admin")
NOT_YOURS = N_("Only a lead ends another member's day")
NO_MEMBER = N_("No such member")


async def _whose(session: Any, actor: TeamMember, member_id: int | None) -> TeamMember:
    """Whose day ends: the actor's own, or (a lead's choice) another member's."""
    if member_id is None or member_id == actor.id:
        return actor
    if actor.role not in LEADS:
        raise HTTPException(403, NOT_YOURS)
    try:
        return await get_member(session, member_id)
    except MemberNotFound as exc:
        raise HTTPException(404, NO_MEMBER) from exc


async def _preview(session: Any, who: TeamMember, now: datetime) -> list[dict[str, Any]]:
    """Each open conversation of ``who``: its customer, whom the handoff would pick, and
    the context package they would get."""
    conversations = await open_conversations_of(session, who.id)  # type: ignore[arg-type]
    packages = await build_context_packages(session, conversations, now=now)
    rows = []
    for c in conversations:
        rows.append(
            {
                "c": c,
                "customer": await get_customer(session, c.customer_id),
                "proposal": await handoff.propose(
                    session,
                    c.id,  # type: ignore[arg-type]
                    now,
                    actor_id=who.id,
                    later=False,
                ),
                "package": packages.get(c.id, {}),  # type: ignore[arg-type]
            }
        )
    return rows


@router.get("/end-of-day", response_class=HTMLResponse)
async def end_of_day_page(
    request: Request,
    actor: UiAgentDep,
    session: ReadSessionDep,
    member_id: str = "",
    handed: int | None = None,
) -> Response:
    who = await _whose(session, actor, member_choice(member_id))
    rows = await _preview(session, who, utcnow())
    return page(
        request,
        "end_of_day.html",
        actor,
        nav="inbox",
        who=who,
        rows=rows,
        handed=handed,
        iso=datetime.fromisoformat,
    )


@router.post("/end-of-day", dependencies=[CsrfDep])
async def end_day(actor: UiAgentDep, session: SessionDep, member_id: str = Form("")) -> Response:
    """Hand every open conversation of the member over, as their shift had ended now."""
    who = await _whose(session, actor, member_choice(member_id))
    now = utcnow()
    handed = await handoff.handoff_shift_end(session, who.id, now, shift_end=now)  # type: ignore[arg-type]
    await session.commit()
    if handed:
        jobs.wake_workers()
    mine = "" if who.id == actor.id else f"member_id={who.id}&"
    return RedirectResponse(f"/end-of-day?{mine}handed={len(handed)}", status_code=303)
