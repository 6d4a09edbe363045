"""Web app pages: the conversation (issue #16 "The conversation").

``/conversations/{id}`` shows the thread (messages of every channel with their original and
translation, attachments, private notes, assignment lines with routing's reason, each
reply's delivery state), the header and the actions: claim, assign (the router's
suggestion first, with its reason: ``routing.suggest``), hand off (with the context package
the next agent gets), snooze in the agent's zone, priority, tags, resolve, reopen, retry a
failed reply. ``?compose=reply|note`` opens the composer on that tab. Every write calls the
same service function as the REST API (``_act``); a refusal (an agent claiming someone
else's conversation, a bad priority) comes back as this page with the reason, never JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import escape

from crm_core.identity import get_customer
from handoff import service as handoff
from handoff.context import build_context_packages
from heliograph import jobs, texts
from inbox import conversations as conv
from inbox import reads as inbox_reads
from inbox import translation
from inbox.attachments_out import AttachmentRefused, OutgoingFile
from routing import assignment, history
from routing.models import TeamMember
from routing.reads import active_members, member_names
from routing.suggest import suggest
from routing.team import MemberNotFound
from web.deps import ReadSessionDep, SessionDep
from web.ui.forms import PICK_A_MEMBER, Refused, member_choice
from web.ui.render import N_, page
from web.ui.session import CsrfDep, UiAgentDep, UiMemberDep

router = APIRouter(include_in_schema=False)

COMPOSE_TABS = ("reply", "note")
NO_CONVERSATION = N_("No such conversation")
NO_MESSAGE = N_("No such message in this conversation")


async def _thread(session: Any, conversation_id: int) -> dict[str, Any]:
    """The thread's entries, oldest first: messages, notes and assignment lines."""
    messages = await conv.messages_of(session, conversation_id)
    files = await conv.attachments_of(session, [m.id for m in messages])  # type: ignore[misc]
    by_message: dict[int | None, list[Any]] = {}
    for f in files:
        by_message.setdefault(f.message_id, []).append(f)
    notes = await conv.notes_of(session, conversation_id)
    moves = await history.history(session, conversation_id)
    handoffs = await handoff.handoffs_of(session, conversation_id)
    ids = {m.author_id for m in messages} | {n.author_id for n in notes}
    ids |= {a.member_id for a in moves} | {h.to_member_id for h in handoffs}
    names = await member_names(session, [i for i in ids if i is not None])
    entries: list[dict[str, Any]] = []
    for m in messages:
        entries.append(
            {"kind": "message", "at": m.created_at, "m": m, "files": by_message.get(m.id, [])}
        )
    for n in notes:
        entries.append({"kind": "note", "at": n.created_at, "n": n})
    for move in moves:
        entries.append({"kind": "system", "at": move.at, "a": move})
    for h in handoffs:
        entries.append({"kind": "handoff", "at": h.created_at, "h": h})
    entries.sort(key=lambda e: (e["at"].replace(tzinfo=None), e["kind"] != "message"))
    return {"entries": entries, "names": names}


async def _thread_context(session: Any, conversation_id: int) -> dict[str, Any]:
    """What the thread fragment shows: the conversation, its customer, the entries."""
    try:
        conversation = await conv.get_conversation(session, conversation_id)
    except conv.ConversationNotFound as exc:
        raise HTTPException(404, NO_CONVERSATION) from exc
    customer = await get_customer(session, conversation.customer_id)
    return {"c": conversation, "customer": customer, **await _thread(session, conversation_id)}


async def _context(session: Any, conversation_id: int, viewer: TeamMember) -> dict[str, Any]:
    """The whole page: the thread, the team for the pickers, the router's suggestion, whom
    a handoff by ``viewer`` would pick (``handoff.propose``, what ``handoff_manual`` does)
    and the context package it would carry."""
    ctx = await _thread_context(session, conversation_id)
    conversation = ctx["c"]
    members = await active_members(session, ("agent", "lead", "admin"))
    packages = await build_context_packages(session, [conversation])
    suggestion = await suggest(session, conversation_id)
    proposal = await handoff.propose(session, conversation_id, actor_id=viewer.id)
    picks = sorted(members, key=lambda x: x.id != suggestion.member_id)  # the suggestion first
    receivers = [x for x in members if x.id != conversation.assignee_id]
    proposed_id = proposal.member.id if proposal.member is not None else None
    return {
        **ctx,
        "package": packages.get(conversation_id, {}),
        "members": picks,
        "receivers": sorted(receivers, key=lambda x: x.id != proposed_id),  # the proposal first
        "assignee": next((x for x in members if x.id == conversation.assignee_id), None),
        "suggestion": suggestion,
        "proposal": proposal,
    }


def _render(
    request: Request,
    member: TeamMember,
    ctx: dict[str, Any],
    *,
    compose: str = "",
    refusal: str | None = None,
    draft: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "conversation.html",
        member,
        nav="inbox",
        status_code=status_code,
        compose=compose if compose in COMPOSE_TABS else "",
        refusal=refusal,
        draft=draft or {},
        iso=datetime.fromisoformat,
        **ctx,
    )


@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
async def conversation_page(
    conversation_id: int,
    request: Request,
    member: UiMemberDep,
    session: ReadSessionDep,
    compose: str = "",
) -> Response:
    """``?compose=reply`` or ``?compose=note`` (the inbox's r and n keys): the composer
    opens on that tab with the cursor in it; any other value is ignored."""
    ctx = await _context(session, conversation_id, member)
    return _render(request, member, ctx, compose=compose)


@router.get("/conversations/{conversation_id}/thread", response_class=HTMLResponse)
async def thread(
    conversation_id: int, request: Request, member: UiMemberDep, session: ReadSessionDep
) -> Response:
    ctx = await _thread_context(session, conversation_id)
    return page(request, "conversation_thread.html", member, iso=datetime.fromisoformat, **ctx)


@router.get("/conversations/{conversation_id}/attachments/{attachment_id}")
async def attachment_file(
    conversation_id: int, attachment_id: int, _: UiMemberDep, session: ReadSessionDep
) -> Response:
    """An inbound attachment's bytes, to signed-in members only."""
    messages = await conv.messages_of(session, conversation_id)
    for a in await conv.attachments_of(session, [m.id for m in messages]):  # type: ignore[misc]
        if a.id == attachment_id and a.storage_path:
            return FileResponse(
                a.storage_path,
                media_type=a.content_type or "application/octet-stream",
                filename=a.filename or f"attachment-{a.id}",
                content_disposition_type="inline" if a.kind in ("image", "audio") else "attachment",
            )
    raise HTTPException(404, N_("No such attachment"))


async def _act(
    request: Request,
    member: TeamMember,
    session: Any,
    conversation_id: int,
    work: Callable[[], Awaitable[object]],
    *,
    wake: bool = False,
    draft: dict[str, str] | None = None,
) -> Response:
    """Every action's one path: ``work()`` (a service function, as the REST API calls it),
    commit, wake the workers when it queued jobs, back to the page. A conversation that
    does not exist is a 404; a refusal is this page again with the reason (409 for an
    assignment, claim or handoff that is not allowed, 422 for bad input) and what the
    agent typed (``draft``), nothing changed."""
    try:
        await work()
    except conv.ConversationNotFound as exc:
        raise HTTPException(404, NO_CONVERSATION) from exc
    except Refused as exc:
        return await _refused(
            request, member, session, conversation_id, exc.status_code, exc.detail, draft
        )
    except assignment.AssignmentRefused as exc:
        reason = texts.message(exc)  # the service's Text: the page shows it translated
        return await _refused(request, member, session, conversation_id, 409, reason, draft)
    except (conv.InvalidRequest, AttachmentRefused, MemberNotFound) as exc:
        reason = texts.message(exc)
        return await _refused(request, member, session, conversation_id, 422, reason, draft)
    await session.commit()
    if wake:
        jobs.wake_workers()
    return RedirectResponse(f"/conversations/{conversation_id}", status_code=303)


async def _refused(
    request: Request,
    member: TeamMember,
    session: Any,
    conversation_id: int,
    status_code: int,
    reason: str,
    draft: dict[str, str] | None,
) -> Response:
    await session.rollback()  # nothing of a refused action stays
    ctx = await _context(session, conversation_id, member)
    compose = "note" if draft and "note" in draft else ""
    return _render(
        request, member, ctx, compose=compose, refusal=reason, draft=draft, status_code=status_code
    )


@router.post("/conversations/{conversation_id}/reply", dependencies=[CsrfDep])
async def reply(
    conversation_id: int,
    request: Request,
    agent: UiAgentDep,
    session: SessionDep,
    text: str = Form(""),
    files: list[UploadFile] = File(default=[]),
) -> Response:
    """Queue a reply (with any files: ATTACHMENTS' check refuses what the channel cannot carry)."""
    outgoing = [
        OutgoingFile(f.filename or "file", f.content_type or "application/octet-stream", data)
        for f in files
        if f.filename and (data := await f.read())
    ]

    async def work() -> object:
        return await conv.reply(
            session, conversation_id, text, author_id=agent.id, attachments=outgoing
        )

    return await _act(
        request, agent, session, conversation_id, work, wake=True, draft={"reply": text}
    )


@router.post("/conversations/{conversation_id}/note", dependencies=[CsrfDep])
async def note(
    conversation_id: int,
    request: Request,
    agent: UiAgentDep,
    session: SessionDep,
    text: str = Form(""),
) -> Response:
    async def work() -> object:
        return await conv.add_note(session, conversation_id, text, author_id=agent.id)

    return await _act(request, agent, session, conversation_id, work, draft={"note": text})


@router.post("/conversations/{conversation_id}/preview", dependencies=[CsrfDep])
async def preview(
    conversation_id: int, agent: UiAgentDep, session: ReadSessionDep, text: str = Form("")
) -> HTMLResponse:
    """The reply as the customer will read it (the translation service the outbox uses)."""
    conversation = await conv.get_conversation(session, conversation_id)
    source = getattr(agent, "ui_language", None) or "en"
    target = conversation.language or source
    translated = text
    if text.strip() and target != source and conversation.translation_enabled:
        translated, _cached = await translation.translate_cached(text, source, target)
    body = f'<p class="preview" lang="{escape(target)}">{escape(translated)}</p>'
    return HTMLResponse(body)


@router.post("/conversations/{conversation_id}/status/{status}", dependencies=[CsrfDep])
async def set_status(
    conversation_id: int, status: str, request: Request, agent: UiAgentDep, session: SessionDep
) -> Response:
    """Resolve or reopen."""
    if status not in ("resolved", "open"):
        raise HTTPException(404, N_("No such action"))
    return await _act(
        request,
        agent,
        session,
        conversation_id,
        lambda: conv.set_status(session, conversation_id, status),
    )


def _in_zone(until: str, timezone: str | None) -> datetime:
    """``until`` from a datetime-local input, a local time in the agent's zone, in UTC."""
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        local = datetime.fromisoformat(until)
    except ValueError as exc:
        raise Refused(422, N_("Pick a date and time to snooze until")) from exc
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    return local.astimezone(UTC)


@router.post("/conversations/{conversation_id}/snooze", dependencies=[CsrfDep])
async def snooze(
    conversation_id: int,
    request: Request,
    agent: UiAgentDep,
    session: SessionDep,
    until: str = Form(""),
) -> Response:
    """``until`` is a local time in the agent's zone (a datetime-local input); stored in UTC."""

    async def work() -> object:
        at = _in_zone(until, agent.timezone)
        return await conv.set_status(session, conversation_id, "snoozed", snoozed_until=at)

    return await _act(request, agent, session, conversation_id, work)


@router.post("/conversations/{conversation_id}/assign", dependencies=[CsrfDep])
async def assign(
    conversation_id: int,
    request: Request,
    actor: UiAgentDep,
    session: SessionDep,
    member_id: str = Form(""),
) -> Response:
    """Claim (member_id = yourself) or assign: routing's assign_to, as the REST API."""

    async def work() -> object:
        chosen = member_choice(member_id)
        if chosen is None:
            raise Refused(422, PICK_A_MEMBER)
        return await assignment.assign_to(session, conversation_id, chosen, actor)

    return await _act(request, actor, session, conversation_id, work, wake=True)


@router.post("/conversations/{conversation_id}/handoff", dependencies=[CsrfDep])
async def hand_off(
    conversation_id: int,
    request: Request,
    actor: UiAgentDep,
    session: SessionDep,
    to_member_id: str = Form(""),
    note: str = Form(""),
) -> Response:
    """A manual handoff (handoff's handoff_manual, as the REST API)."""

    async def work() -> object:
        return await handoff.handoff_manual(
            session,
            conversation_id,
            actor,
            to_member_id=member_choice(to_member_id),
            note=note or None,
        )

    return await _act(request, actor, session, conversation_id, work, wake=True)


@router.post("/conversations/{conversation_id}/priority", dependencies=[CsrfDep])
async def priority(
    conversation_id: int,
    request: Request,
    agent: UiAgentDep,
    session: SessionDep,
    priority: str = Form(""),
) -> Response:
    return await _act(
        request,
        agent,
        session,
        conversation_id,
        lambda: conv.set_priority(session, conversation_id, priority),
    )


@router.post("/conversations/{conversation_id}/tags", dependencies=[CsrfDep])
async def tags(
    conversation_id: int,
    request: Request,
    agent: UiAgentDep,
    session: SessionDep,
    tags: str = Form(""),
) -> Response:
    return await _act(
        request,
        agent,
        session,
        conversation_id,
        lambda: conv.set_tags(session, conversation_id, tags.split(",")),
    )


@router.post("/conversations/{conversation_id}/messages/{message_id}/retry", dependencies=[CsrfDep])
async def retry(
    conversation_id: int, message_id: int, request: Request, agent: UiAgentDep, session: SessionDep
) -> Response:
    """Queue a failed reply again (its dead outbox job, as the admin's retry). A message
    that is not this conversation's is a 404."""
    found = await inbox_reads.message(session, message_id)
    if found is None or found.conversation_id != conversation_id:
        raise HTTPException(404, NO_MESSAGE)

    async def work() -> object:
        if not await conv.retry_delivery(session, message_id):
            raise Refused(409, N_("This reply has not failed"))
        return None

    return await _act(request, agent, session, conversation_id, work, wake=True)
