"""Web app pages: the conversation (issue #16 "The conversation").

``/conversations/{id}`` shows the thread (messages of every channel with their original and
translation, attachments, private notes, assignment lines with routing's reason), the header
and the actions. Every write calls the same service function as the REST API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import escape

from crm_core.identity import get_customer
from handoff import service as handoff
from handoff.context import build_context_packages
from heliograph import jobs
from inbox import conversations as conv
from inbox import translation
from inbox.attachments_out import AttachmentRefused, OutgoingFile
from routing import assignment, history
from routing.reads import active_members, member_names
from web.deps import ReadSessionDep, SessionDep
from web.ui.render import page
from web.ui.session import CsrfDep, UiAgentDep, UiMemberDep

router = APIRouter(include_in_schema=False)


async def _thread(session: Any, conversation_id: int) -> dict[str, Any]:
    """The thread's entries, oldest first: messages, notes and assignment lines."""
    messages = await conv.messages_of(session, conversation_id)
    files = await conv.attachments_of(session, [m.id for m in messages])  # type: ignore[misc]
    by_message: dict[int, list[Any]] = {}
    for a in files:
        by_message.setdefault(a.message_id, []).append(a)
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
    for a in moves:
        entries.append({"kind": "system", "at": a.at, "a": a})
    for h in handoffs:
        entries.append({"kind": "handoff", "at": h.created_at, "h": h})
    entries.sort(key=lambda e: (e["at"].replace(tzinfo=None), e["kind"] != "message"))
    return {"entries": entries, "names": names}


async def _context(session: Any, conversation_id: int) -> dict[str, Any]:
    try:
        conversation = await conv.get_conversation(session, conversation_id)
    except conv.ConversationNotFound as exc:
        raise HTTPException(404, "No such conversation") from exc
    customer = await get_customer(session, conversation.customer_id)
    members = await active_members(session, ("agent", "lead", "admin"))
    packages = await build_context_packages(session, [conversation])
    return {
        "package": packages.get(conversation_id, {}),
        "c": conversation,
        "customer": customer,
        "members": members,
        "assignee": next((x for x in members if x.id == conversation.assignee_id), None),
        **await _thread(session, conversation_id),
    }


@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
async def conversation_page(
    conversation_id: int, request: Request, member: UiMemberDep, session: ReadSessionDep
) -> Response:
    ctx = await _context(session, conversation_id)
    return page(request, "conversation.html", member, nav="inbox", **ctx)


@router.get("/conversations/{conversation_id}/thread", response_class=HTMLResponse)
async def thread(
    conversation_id: int, request: Request, member: UiMemberDep, session: ReadSessionDep
) -> Response:
    ctx = await _context(session, conversation_id)
    return page(request, "conversation_thread.html", member, **ctx)


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
    raise HTTPException(404, "No such attachment")


def _back(conversation_id: int) -> Response:
    return RedirectResponse(f"/conversations/{conversation_id}", status_code=303)


@router.post("/conversations/{conversation_id}/reply", dependencies=[CsrfDep])
async def reply(
    conversation_id: int,
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
    try:
        await conv.reply(session, conversation_id, text, author_id=agent.id, attachments=outgoing)
    except (conv.InvalidRequest, AttachmentRefused) as exc:
        raise HTTPException(422, str(exc)) from exc
    await session.commit()
    jobs.wake_workers()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/note", dependencies=[CsrfDep])
async def note(
    conversation_id: int, agent: UiAgentDep, session: SessionDep, text: str = Form("")
) -> Response:
    try:
        await conv.add_note(session, conversation_id, text, author_id=agent.id)
    except conv.InvalidRequest as exc:
        raise HTTPException(422, str(exc)) from exc
    await session.commit()
    return _back(conversation_id)


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
    conversation_id: int, status: str, _: UiAgentDep, session: SessionDep
) -> Response:
    if status not in ("resolved", "open"):
        raise HTTPException(404, "No such action")
    await conv.set_status(session, conversation_id, status)  # type: ignore[arg-type]
    await session.commit()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/snooze", dependencies=[CsrfDep])
async def snooze(
    conversation_id: int, agent: UiAgentDep, session: SessionDep, until: str = Form(...)
) -> Response:
    """``until`` is a local time in the agent's zone (a datetime-local input); stored in UTC."""
    try:
        zone = ZoneInfo(agent.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        local = datetime.fromisoformat(until)
    except ValueError as exc:
        raise HTTPException(422, "until is not a date and time") from exc
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    at = local.astimezone(UTC)
    await conv.set_status(session, conversation_id, "snoozed", snoozed_until=at)
    await session.commit()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/assign", dependencies=[CsrfDep])
async def assign(
    conversation_id: int, actor: UiAgentDep, session: SessionDep, member_id: int = Form(...)
) -> Response:
    """Claim (member_id = yourself) or assign: routing's assign_to, as the REST API."""
    try:
        await assignment.assign_to(session, conversation_id, member_id, actor)
    except assignment.AssignmentRefused as exc:
        raise HTTPException(409, str(exc)) from exc
    await session.commit()
    jobs.wake_workers()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/handoff", dependencies=[CsrfDep])
async def hand_off(
    conversation_id: int,
    actor: UiAgentDep,
    session: SessionDep,
    to_member_id: str = Form(""),
    note: str = Form(""),
) -> Response:
    """A manual handoff (handoff's handoff_manual, as the REST API)."""
    try:
        await handoff.handoff_manual(
            session,
            conversation_id,
            actor,
            to_member_id=int(to_member_id) if to_member_id else None,
            note=note or None,
        )
    except assignment.AssignmentRefused as exc:
        raise HTTPException(409, str(exc)) from exc
    await session.commit()
    jobs.wake_workers()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/priority", dependencies=[CsrfDep])
async def priority(
    conversation_id: int, _: UiAgentDep, session: SessionDep, priority: str = Form(...)
) -> Response:
    try:
        await conv.set_priority(session, conversation_id, priority)
    except conv.InvalidRequest as exc:
        raise HTTPException(422, str(exc)) from exc
    await session.commit()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/tags", dependencies=[CsrfDep])
async def tags(
    conversation_id: int, _: UiAgentDep, session: SessionDep, tags: str = Form("")
) -> Response:
    await conv.set_tags(session, conversation_id, tags.split(","))
    await session.commit()
    return _back(conversation_id)


@router.post("/conversations/{conversation_id}/messages/{message_id}/retry", dependencies=[CsrfDep])
async def retry(
    conversation_id: int, message_id: int, _: UiAgentDep, session: SessionDep
) -> Response:
    """Queue a failed reply again (its dead outbox job, as the admin's retry)."""
    if not await conv.retry_delivery(session, message_id):
        raise HTTPException(409, "This reply has not failed")
    await session.commit()
    jobs.wake_workers()
    return _back(conversation_id)
