"""``/api/v1/conversations``: list, read, reply, note, resolve, reopen, snooze, priority
and tags (``PATCH``), and the router's suggestion of who should take it."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from crm_core.identity import get_customer
from heliograph import jobs
from inbox import conversations as conv
from inbox.attachments_out import OutgoingFile
from routing.suggest import suggest
from web.api.schemas import (
    AttachmentOut,
    ConversationDetail,
    ConversationOut,
    CustomerOut,
    MessageOut,
    NoteOut,
    Out,
    Patch,
    ReplyIn,
    SnoozeIn,
    TextIn,
)
from web.api.types import DbId, Id
from web.deps import AgentDep, MemberDep, ReadSessionDep, SessionDep
from web.idempotency import IdempotencyDep, Outcome

router = APIRouter(prefix="/conversations", tags=["conversations"])


@router.get("", response_model=list[ConversationOut])
async def list_(
    session: ReadSessionDep,
    member: MemberDep,
    status: str | None = Query(None, pattern="^(open|pending|snoozed|resolved)$"),
    assignee_id: DbId | None = None,
    unassigned: bool = False,
    channel: str | None = Query(None, max_length=32),
    customer_id: DbId | None = None,
    before_id: DbId | None = Query(None, description="page: ids below this one"),
    limit: int = Query(50, ge=1, le=200),
    view: str | None = Query(
        None, pattern="^(mine|unassigned|all|waiting|snoozed|resolved)$", description="as the inbox"
    ),
    language: str | None = Query(None, max_length=16),
    priority: str | None = Query(None, max_length=16),
    tag: str | None = Query(None, max_length=64),
    q: str | None = Query(None, max_length=200, description="customer name/email/phone or text"),
) -> list[object]:
    f = conv.ConversationFilter(
        status,
        assignee_id,
        unassigned,
        channel,
        customer_id,
        before_id,
        limit,
        view=view,
        member_id=member.id,
        language=language,
        priority=priority,
        tag=tag,
        q=q,
    )
    return await conv.list_conversations(session, f)  # type: ignore[return-value]


async def _detail(session: ReadSessionDep | SessionDep, conversation_id: int) -> ConversationDetail:
    conversation = await conv.get_conversation(session, conversation_id)
    messages = await conv.messages_of(session, conversation_id)
    attachments = await conv.attachments_of(session, [m.id for m in messages])  # type: ignore[misc]
    by_message: dict[int, list[AttachmentOut]] = {}
    for a in attachments:
        by_message.setdefault(a.message_id, []).append(AttachmentOut.model_validate(a))
    return ConversationDetail.model_validate(
        {
            **ConversationOut.model_validate(conversation).model_dump(),
            "customer": CustomerOut.model_validate(
                await get_customer(session, conversation.customer_id)
            ),
            "messages": [
                MessageOut.model_validate(m).model_copy(
                    update={"attachments": by_message.get(m.id, [])}  # type: ignore[arg-type]
                )
                for m in messages
            ],
            "notes": [
                NoteOut.model_validate(n) for n in await conv.notes_of(session, conversation_id)
            ],
        }
    )


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def get(conversation_id: Id, session: ReadSessionDep, _: MemberDep) -> ConversationDetail:
    return await _detail(session, conversation_id)


@router.post("/{conversation_id}/reply", response_model=MessageOut, status_code=202)
async def reply(
    conversation_id: Id, body: ReplyIn, agent: AgentDep, idem: IdempotencyDep, session: SessionDep
) -> object:
    """Queue a reply; it leaves through the outbox (``delivery_status`` tells how it went).
    With an ``Idempotency-Key``, a retry gets the first answer and nothing is sent twice.
    ``attachments``: files in base64; one the channel cannot carry is a 422 with the reason."""
    files = []
    for f in body.attachments:
        try:
            data = base64.b64decode(f.data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HTTPException(422, f"{f.filename}: data_base64 is not base64") from exc
        files.append(OutgoingFile(f.filename, f.content_type, data))

    async def work() -> Outcome:
        # A file the channel cannot carry: AttachmentRefused, a 422 (web/errors.py).
        message = await conv.reply(
            session, conversation_id, body.text, author_id=agent.id, attachments=files
        )
        return Outcome(MessageOut.model_validate(message), 202, message.customer_id)

    answer = await idem.run(session, work)
    jobs.wake_workers()
    return answer


@router.post("/{conversation_id}/notes", response_model=NoteOut, status_code=201)
async def note(
    conversation_id: Id, body: TextIn, agent: AgentDep, idem: IdempotencyDep, session: SessionDep
) -> object:
    """A private note: the team sees it, the customer never does (``Idempotency-Key`` too)."""

    async def work() -> Outcome:
        created = await conv.add_note(session, conversation_id, body.text, author_id=agent.id)
        customer_id = (await conv.get_conversation(session, conversation_id)).customer_id
        return Outcome(NoteOut.model_validate(created), 201, customer_id)

    return await idem.run(session, work)


async def _status(session: SessionDep, conversation_id: int, status: str, **kw: object) -> object:
    conversation = await conv.set_status(session, conversation_id, status, **kw)  # type: ignore[arg-type]
    await session.commit()
    return conversation


@router.post("/{conversation_id}/resolve", response_model=ConversationOut)
async def resolve(conversation_id: Id, session: SessionDep, _: AgentDep) -> object:
    return await _status(session, conversation_id, "resolved")


@router.post("/{conversation_id}/reopen", response_model=ConversationOut)
async def reopen(conversation_id: Id, session: SessionDep, _: AgentDep) -> object:
    return await _status(session, conversation_id, "open")


@router.post("/{conversation_id}/snooze", response_model=ConversationOut)
async def snooze(conversation_id: Id, body: SnoozeIn, session: SessionDep, _: AgentDep) -> object:
    until = body.until
    until = until.replace(tzinfo=UTC) if until.tzinfo is None else until.astimezone(UTC)
    return await _status(session, conversation_id, "snoozed", snoozed_until=until)


class ConversationPatch(Patch):
    """What a ``PATCH`` may change; a field left out keeps its value (null is refused)."""

    priority: str | None = Field(None, max_length=16, description="low, normal, high or urgent")
    tags: list[str] | None = Field(
        None, max_length=50, description="replaces the tags (trimmed, lower case, no duplicates)"
    )


@router.patch("/{conversation_id}", response_model=ConversationOut)
async def patch(
    conversation_id: Id, body: ConversationPatch, session: SessionDep, _: AgentDep
) -> object:
    """Set the priority and/or the tags (the conversation page's functions); 422 names a
    priority that is not one of them."""
    conversation = await conv.get_conversation(session, conversation_id)
    if body.priority is not None:
        try:
            conversation = await conv.set_priority(session, conversation_id, body.priority)
        except conv.InvalidRequest as exc:
            raise HTTPException(422, str(exc)) from exc
    if body.tags is not None:
        conversation = await conv.set_tags(session, conversation_id, body.tags)
    await session.commit()
    return conversation


class SuggestionOut(Out):
    conversation_id: int
    at: datetime
    member_id: int | None = Field(description="null: nobody may take it now (reason says why)")
    name: str | None
    reason: str
    load: int | None
    capacity: int | None
    previous_agent: bool
    speaks: str | None
    knows: list[str]
    nobody: str | None = Field(
        description="why nobody: off_shift, language, expertise, away, capacity or other"
    )


@router.get("/{conversation_id}/suggestion", response_model=SuggestionOut)
async def suggestion(conversation_id: Id, session: ReadSessionDep, _: MemberDep) -> object:
    """Who the router would give the conversation to now, and why (its rule and its
    words); nothing is assigned. Assign with ``POST /routing/conversations/{id}/assign``."""
    return await suggest(session, conversation_id)
