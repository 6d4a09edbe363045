"""Web app pages: customers (issue #16 "The customer").

``/customers`` searches (crm_core's search, as the REST API); ``/customers/{id}`` is the
profile: header, journey map and moves, scores with their inputs, programs, conversations,
timeline (paged), open interventions, contact points; merge (leads), export and erase
(admins). Every write calls the same function as the REST API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from crm_core import gdpr, identity, interventions, profile
from crm_core.models import JOURNEY_STAGES
from heliograph import texts
from inbox import interventions as inbox_interventions
from inbox.conversations import ConversationFilter, list_conversations
from inbox.timeline import customer_timeline
from web.deps import ReadSessionDep, SessionDep
from web.ui.render import N_, from_query, page, to_query
from web.ui.session import CsrfDep, UiAdminDep, UiAgentDep, UiLeadDep, UiMemberDep

router = APIRouter(include_in_schema=False)
TIMELINE_PAGE = 30
SCORES = ("engagement", "health", "progression", "lifetime_value")


def _timeline_rows(entries: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "at": e.at,
            "kind": e.kind,
            "summary": e.summary,
            "conversation_id": e.conversation_id,
            "milestone": e.kind == "event.milestone_reported",
        }
        for e in entries
    ]


def _score_rows(score: Any, customer: Any) -> list[dict[str, Any]]:
    """Each score beside the inputs crm_core stored with it (nothing recomputed here)."""
    if score is None:
        return []
    return [
        {"key": "engagement", "value": score.engagement, "inputs": score.engagement_inputs},
        {"key": "health", "value": score.health, "inputs": score.health_inputs},
        {"key": "progression", "value": score.progression, "inputs": score.progression_inputs},
        {"key": "lifetime_value", "value": customer.lifetime_value, "inputs": score.ltv_inputs},
    ]


@router.get("/customers", response_class=HTMLResponse)
async def customers(
    request: Request,
    member: UiMemberDep,
    session: ReadSessionDep,
    q: str = Query("", max_length=255),
) -> HTMLResponse:
    found = await identity.search_customers(session, q, 50) if q.strip() else []
    return page(request, "customers.html", member, nav="customers", q=q, found=found)


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(
    request: Request,
    customer_id: int,
    member: UiMemberDep,
    session: ReadSessionDep,
    merge_q: str = Query("", max_length=255),
    notice: str = Query("", max_length=1000),
) -> HTMLResponse:
    full = await profile.full_profile(session, customer_id)
    customer = full["customer"]
    customer_id = customer.id  # an old (merged) id shows the surviving profile
    conversations = await list_conversations(
        session, ConversationFilter(customer_id=customer_id, limit=200)
    )
    entries = await customer_timeline(session, customer_id, None, TIMELINE_PAGE)
    stage = customer.journey_stage
    merge_found = []
    if merge_q.strip() and member.role in ("lead", "admin"):
        merge_found = [
            c for c in await identity.search_customers(session, merge_q, 20) if c.id != customer_id
        ]
    return page(
        request,
        "customer.html",
        member,
        nav="customers",
        customer=customer,
        full=full,
        stages=JOURNEY_STAGES,
        stage_index=JOURNEY_STAGES.index(stage) if stage in JOURNEY_STAGES else -1,
        scores=_score_rows(full["scores"], customer),
        conversations=conversations,
        timeline=_timeline_rows(entries),
        next_before=entries[-1].at.isoformat() if len(entries) == TIMELINE_PAGE else None,
        merge_q=merge_q,
        merge_found=merge_found,
        notice=from_query(notice),  # a service's Text came as JSON: shown translated
        can_write=member.role in ("agent", "lead", "admin"),
        is_lead=member.role in ("lead", "admin"),
        is_admin=member.role == "admin",
    )


@router.get("/customers/{customer_id}/timeline", response_class=HTMLResponse)
async def timeline_fragment(
    request: Request,
    customer_id: int,
    member: UiMemberDep,
    session: ReadSessionDep,
    before: datetime | None = None,
) -> HTMLResponse:
    """One more page of the timeline (htmx appends it; plain links work too)."""
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    customer = await identity.get_customer(session, customer_id)
    entries = await customer_timeline(session, customer.id, before, TIMELINE_PAGE)  # type: ignore[arg-type]
    return page(
        request,
        "customer_timeline.html",
        member,
        customer=customer,
        timeline=_timeline_rows(entries),
        next_before=entries[-1].at.isoformat() if len(entries) == TIMELINE_PAGE else None,
    )


def _back(customer_id: int, notice: str = "") -> RedirectResponse:
    url = f"/customers/{customer_id}"
    if notice:
        url += f"?notice={quote(notice)}"
    return RedirectResponse(url, status_code=303)


async def _resolve(session: Any, intervention_id: int, state: str, member: Any) -> Any:
    try:
        found = await interventions.resolve(session, intervention_id, state, f"member:{member.id}")
    except interventions.InterventionNotFound as exc:
        raise HTTPException(404, texts.message(exc)) from exc
    except interventions.InterventionError as exc:
        raise HTTPException(409, texts.message(exc)) from exc
    await session.commit()
    return found


@router.post(
    "/customers/{customer_id}/interventions/{intervention_id}/{action}",
    dependencies=[CsrfDep],
)
async def resolve_intervention(
    customer_id: int, intervention_id: int, action: str, session: SessionDep, member: UiAgentDep
) -> Response:
    states = {"done": "done", "dismiss": "dismissed"}
    if action not in states:
        raise HTTPException(404, N_("No such action."))
    await _resolve(session, intervention_id, states[action], member)
    return _back(customer_id)


@router.post("/customers/{customer_id}/write", dependencies=[CsrfDep])
async def write(customer_id: int, session: SessionDep, _: UiAgentDep) -> Response:
    """Open (or create) the conversation on the channel an intervention would use."""
    customer = await identity.get_customer(session, customer_id)
    try:
        conversation = await inbox_interventions.conversation_to_write(session, customer)
    except inbox_interventions.NoChannel as exc:
        return _back(customer_id, to_query(texts.message(exc)))  # shown translated
    await session.commit()
    return RedirectResponse(f"/conversations/{conversation.id}", status_code=303)


@router.post("/customers/{customer_id}/merge", dependencies=[CsrfDep])
async def merge(
    customer_id: int,
    session: SessionDep,
    lead: UiLeadDep,
    source_id: int = Form(...),
) -> Response:
    """Fold ``source_id`` into this customer (same function as POST /api/v1/.../merge)."""
    await identity.merge_customers(session, customer_id, source_id, actor=f"member:{lead.id}")
    await session.commit()
    return _back(customer_id)


@router.get("/customers/{customer_id}/export")
async def export(customer_id: int, session: ReadSessionDep, _: UiAdminDep) -> JSONResponse:
    document = await gdpr.export_customer(session, customer_id)
    return JSONResponse(
        document,
        headers={"Content-Disposition": f'attachment; filename="customer-{customer_id}.json"'},
    )


@router.post("/customers/{customer_id}/erase", dependencies=[CsrfDep])
async def erase(
    customer_id: int,
    session: SessionDep,
    admin: UiAdminDep,
    confirm_name: str = Form(""),
) -> Response:
    """Erase (GDPR) once the admin typed the customer's name, as the API's erase does."""
    customer = await identity.get_customer(session, customer_id)
    if confirm_name.strip() != (customer.display_name or "").strip():
        return _back(customer_id, N_("Type the customer's name exactly to erase."))
    try:
        await gdpr.erase_customer(session, customer_id, f"member:{admin.id}")
    except gdpr.AlreadyErased as exc:
        raise HTTPException(409, texts.message(exc)) from exc
    await session.commit()
    return RedirectResponse(f"/customers/{customer_id}", status_code=303)
