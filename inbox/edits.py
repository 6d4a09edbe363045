"""A customer edited a message they had sent: the text is updated, the edit recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jobs
from heliograph.db import Database, utcnow
from inbox.models import Message


@dataclass(frozen=True)
class InboundEdit:
    """A customer changed a message they sent earlier (Telegram edited_message, ...)."""

    channel: str
    provider_message_id: str
    text: str
    edited_at: datetime | None = None


async def apply_edit(
    db: Database, channel: str, provider_message_id: str, text: str, edited_at: datetime | None
) -> int | None:
    """Returns the message id, or None when the original never reached us.

    The text before the first edit is kept in ``original_text`` unless translation has
    already used that column; every edit is also published as ``message.edited`` so the
    history can be shown. Replaying the same edit changes nothing.
    """
    async with db.session() as session:
        message = await _find(session, channel, provider_message_id)
        if message is None:
            return None
        translated = message.translation_status == "done"
        if (message.original_text if translated else message.text) == text:
            return message.id
        previous = message.original_text if translated else message.text
        if translated:
            # ``text`` is our translation of ``original_text`` (inbox/translation.py): the
            # customer's new words replace the original, and the message is translated again.
            message.original_text = text
        else:
            message.text = text
        message.translation_status = None  # detect and translate the new words again
        message.edited_at = edited_at or utcnow()
        raw = dict(message.raw or {})
        raw.setdefault("edits", []).append({"text": previous, "replaced_at": utcnow().isoformat()})
        message.raw = raw
        await jobs.publish(
            session,
            "message.edited",
            {"message_id": message.id, "conversation_id": message.conversation_id},
        )
        await session.commit()
        return message.id


async def _find(session: AsyncSession, channel: str, provider_message_id: str) -> Message | None:
    result = await session.execute(
        select(Message).where(
            Message.channel == channel, Message.provider_message_id == provider_message_id
        )
    )
    return result.scalar_one_or_none()
