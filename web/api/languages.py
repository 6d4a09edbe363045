"""``/api/v1/conversations/{id}/language`` and ``/translation``: an agent corrects the
customer's language or switches translation off for one conversation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from heliograph import jobs
from inbox import conversations as conv
from inbox import translation
from web.api.schemas import ConversationOut, In
from web.api.types import Id
from web.deps import AgentDep, SessionDep

router = APIRouter(prefix="/conversations", tags=["languages"])


class LanguageIn(In):
    language: str | None = Field(
        description="ISO 639-1 code the customer writes in, e.g. 'pt'; null: detect again."
    )


class TranslationIn(In):
    enabled: bool


@router.post("/{conversation_id}/language", response_model=ConversationOut)
async def set_language(
    conversation_id: Id, body: LanguageIn, session: SessionDep, _: AgentDep
) -> object:
    """Detection no longer changes an agent's choice; recent messages are translated again."""
    conversation = await conv.get_conversation(session, conversation_id)
    try:
        await translation.set_language(session, conversation, body.language)
    except translation.InvalidLanguage as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    await translation.retranslate_recent(session, conversation_id)
    await session.commit()
    jobs.wake_workers()
    return conversation


@router.post("/{conversation_id}/translation", response_model=ConversationOut)
async def set_translation(
    conversation_id: Id, body: TranslationIn, session: SessionDep, _: AgentDep
) -> object:
    """Off: messages and replies in this conversation are shown and sent as written."""
    conversation = await conv.get_conversation(session, conversation_id)
    translation.set_translation(conversation, body.enabled)
    if body.enabled:
        await translation.retranslate_recent(session, conversation_id)
    await session.commit()
    jobs.wake_workers()
    return conversation
