"""CRM in REST API v1: activity events, programs, profiles, interventions, GDPR.

Routes stay thin: crm_core does the work; this maps its named errors to status codes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from channels import signatures
from crm_core import events, gdpr, interventions, profile, programs
from crm_core.journey import rules_table
from crm_core.triggers import DEFAULT_RULES, RuleError, load_rules, rule_rows
from heliograph import jobs
from heliograph.bounds import TooDeep, load_json
from heliograph.db import get_db
from heliograph.settings import get_settings
from inbox import timeline
from inbox.timeline import TimelineEntry
from routing import reads as routing_reads
from routing.team import authenticate
from web.api.crm_schemas import (
    ErasureOut,
    EventsResult,
    InterventionOut,
    PassOut,
    ProfileOut,
    ProfilePatch,
    ProgramIn,
    ProgramOut,
    ProgramPatch,
    RuleOut,
    RulePatch,
)
from web.api.types import DbId, Id
from web.deps import AdminDep, AgentDep, LeadDep, MemberDep, ReadSessionDep, SessionDep

router = APIRouter(tags=["crm"])
MAX_EVENTS_BODY = 8 * 1024 * 1024  # 1,000 events with room for their `data`
_bearer = HTTPBearer(auto_error=False)

_STATUS = {
    programs.ProgramNotFound: 404,
    interventions.InterventionNotFound: 404,
    programs.ProgramError: 422,
    profile.ProfileError: 422,
    RuleError: 422,
    interventions.InterventionError: 409,
    gdpr.AlreadyErased: 409,
}


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except tuple(_STATUS) as exc:
        raise HTTPException(_STATUS[type(exc)], str(exc)) from exc


# --- activity events --------------------------------------------------------------------------


async def events_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The platform's service token (HELIOGRAPH_EVENTS_API_TOKEN), or a lead's or admin's."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    token = get_settings().events_api_token
    if signatures.matches(credentials.credentials, token):
        return "service"
    async with get_db().read_session() as session:
        member = await authenticate(session, credentials.credentials)
    if member is None:
        raise HTTPException(
            401, "the token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    if member.role not in ("lead", "admin"):
        raise HTTPException(403, f"sending events needs a lead or admin; you are {member.role}")
    return f"member:{member.id}"


async def _json_body(request: Request) -> Any:
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENTS_BODY:
            raise HTTPException(413, f"the body is over the limit of {MAX_EVENTS_BODY} bytes")
        chunks.append(chunk)
    try:
        # The bounded loader (heliograph/bounds.py): the boundary middleware leaves this
        # route's body to it, so deep nesting is a 400 here as everywhere.
        return load_json(b"".join(chunks))
    except TooDeep as exc:
        raise HTTPException(400, str(exc)) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, "the body is not valid JSON") from exc


@router.post(
    "/events",
    response_model=EventsResult,
    summary='Report activity: one event, or {"events": [...]} (up to 1,000)',
    responses={207: {"model": EventsResult, "description": "some events were refused"}},
)
async def post_events(request: Request, _: Annotated[str, Depends(events_caller)]) -> JSONResponse:
    body = await _json_body(request)
    if isinstance(body, dict) and "events" in body:
        batch = body["events"]
    elif isinstance(body, dict):
        batch = [body]
    else:
        batch = body
    if not isinstance(batch, list) or not batch:
        raise HTTPException(422, 'send one event object, or {"events": [...]} with at least one')
    if len(batch) > events.MAX_BATCH:
        raise HTTPException(
            413, f"a batch holds at most {events.MAX_BATCH} events; this one has {len(batch)}"
        )
    # One transaction, taken only once the body is read and checked; on SQLite the whole
    # batch runs on the writer thread in one hop (Database.run_session).
    result = await get_db().run_session(functools.partial(events.ingest, raw_events=batch))
    jobs.wake_workers()  # interventions the batch fired may have messages to send
    if not result.errors:
        code = 200
    elif result.accepted or result.duplicates:
        code = 207  # some kept, some refused: see errors
    else:
        code = 422
    return JSONResponse(result.body(), status_code=code)


# --- programs ---------------------------------------------------------------------------------


@router.get("/programs", response_model=list[ProgramOut])
async def list_programs(session: ReadSessionDep, _: MemberDep) -> list[Any]:
    return await programs.list_programs(session)


@router.post("/programs", response_model=ProgramOut, status_code=201)
async def create_program(body: ProgramIn, session: SessionDep, _: LeadDep) -> Any:
    with _errors():
        program = await programs.create_program(session, **body.model_dump())
    await session.commit()
    return program


@router.patch("/programs/{program_id}", response_model=ProgramOut)
async def update_program(
    program_id: Id, body: ProgramPatch, session: SessionDep, _: LeadDep
) -> Any:
    with _errors():
        program = await programs.update_program(
            session, program_id, **body.model_dump(exclude_unset=True)
        )
    await session.commit()
    return program


# --- profiles ---------------------------------------------------------------------------------


@router.get("/customers/{customer_id}/profile", response_model=ProfileOut)
async def get_profile(customer_id: Id, session: ReadSessionDep, _: MemberDep) -> Any:
    return await profile.full_profile(session, customer_id)


@router.patch("/customers/{customer_id}/profile", response_model=ProfileOut)
async def patch_profile(
    customer_id: Id, body: ProfilePatch, session: SessionDep, _: AgentDep
) -> Any:
    with _errors():
        await profile.update_profile(session, customer_id, body.model_dump(exclude_unset=True))
    await session.commit()
    return await profile.full_profile(session, customer_id)


@router.get("/journey/rules", summary="How events move customers along the journey")
async def journey_rules(_: MemberDep) -> list[dict[str, Any]]:
    return rules_table()


# --- interventions ----------------------------------------------------------------------------


@router.get("/interventions", response_model=list[InterventionOut])
async def list_interventions(
    session: ReadSessionDep,
    _: MemberDep,
    state: Literal["open", "done", "dismissed"] | None = None,
    rule: Literal[tuple(DEFAULT_RULES)] | None = None,  # type: ignore[valid-type]
    owner_id: DbId | None = None,
    customer_id: DbId | None = None,
    before_id: DbId | None = Query(None, description="keyset pagination, newest first"),
    limit: int = Query(50, ge=1, le=200),
) -> list[Any]:
    f = interventions.InterventionFilter(state, rule, owner_id, customer_id, before_id, limit)
    with _errors():
        return await interventions.list_interventions(session, f)


async def _resolve(session: Any, intervention_id: int, state: str, actor: str) -> Any:
    with _errors():
        found = await interventions.resolve(session, intervention_id, state, actor)
    await session.commit()
    return found


@router.post("/interventions/{intervention_id}/done", response_model=InterventionOut)
async def mark_done(intervention_id: Id, session: SessionDep, member: AgentDep) -> Any:
    return await _resolve(session, intervention_id, "done", f"member:{member.id}")


@router.post("/interventions/{intervention_id}/dismiss", response_model=InterventionOut)
async def dismiss(intervention_id: Id, session: SessionDep, member: AgentDep) -> Any:
    return await _resolve(session, intervention_id, "dismissed", f"member:{member.id}")


@router.post("/interventions/evaluate", response_model=PassOut, summary="Run the triggers now")
async def evaluate_now(_: LeadDep) -> PassOut:
    result = await get_db().run_session(interventions.evaluate)
    jobs.wake_workers()  # automatic messages that are due go now
    return PassOut(created=result.created, by_rule=result.by_rule)


@router.get("/intervention-rules", response_model=list[RuleOut])
async def list_rules(session: ReadSessionDep, _: MemberDep) -> list[dict[str, Any]]:
    return rule_rows(await load_rules(session))


@router.patch("/intervention-rules/{name}", response_model=RuleOut)
async def change_rule(name: str, body: RulePatch, session: SessionDep, lead: LeadDep) -> Any:
    with _errors():
        rule = await interventions.set_rule(
            session, name, f"member:{lead.id}", **body.model_dump(exclude_unset=True)
        )
    await session.commit()
    return rule_rows({rule.name: rule})[0]


# --- GDPR -------------------------------------------------------------------------------------


@router.get("/customers/{customer_id}/export", summary="Everything held about a customer")
async def export(customer_id: Id, session: ReadSessionDep, _: LeadDep) -> JSONResponse:
    document = await gdpr.export_customer(session, customer_id)
    return JSONResponse(
        document,
        headers={"Content-Disposition": f'attachment; filename="customer-{customer_id}.json"'},
    )


async def _erase(customer_id: int, session: Any, actor: str) -> ErasureOut:
    with _errors():
        rows = await gdpr.erase_customer(session, customer_id, actor)
    await session.commit()
    return ErasureOut(customer_id=customer_id, rows=rows)


@router.post("/customers/{customer_id}/erase", response_model=ErasureOut)
async def erase(customer_id: Id, session: SessionDep, admin: AdminDep) -> ErasureOut:
    return await _erase(customer_id, session, f"member:{admin.id}")


@router.delete("/customers/{customer_id}", response_model=ErasureOut, summary="Erase (GDPR)")
async def delete_customer(customer_id: Id, session: SessionDep, admin: AdminDep) -> ErasureOut:
    return await _erase(customer_id, session, f"member:{admin.id}")


# --- routing's part of the profile (web is the one package that sees both) ------------------


async def _assignment_entries(session: Any, customer_id: int, before: Any, limit: int) -> list[Any]:
    return [
        TimelineEntry(
            a.at,
            f"assignment.{a.kind}",
            a.conversation_id,
            a.reason[:200],
            {"member_id": a.member_id, "previous_member_id": a.previous_member_id},
        )
        for a in await routing_reads.customer_assignments(session, customer_id, before, limit)
    ]


async def _export_assignments(session: Any, customer_ids: list[int]) -> dict[str, Any]:
    rows = await routing_reads.assignments_of_customers(session, customer_ids)
    return {"assignments": [gdpr.plain(a) for a in rows]}


def _register() -> None:
    if _assignment_entries not in timeline.timeline_sources:
        timeline.timeline_sources.append(_assignment_entries)
    if _export_assignments not in gdpr.export_hooks:
        gdpr.export_hooks.append(_export_assignments)


_register()
