"""Which conversation a threaded reply belongs to, for channels whose messages point at
their parents (email's In-Reply-To / References).

A provider's id may be a customer's message we stored (``provider_message_id``) or a reply
we sent (``external_id``, the id the provider gave it); either way the answer is the
``thread_key`` of that message's conversation, which ``accept`` then threads by.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.reads import identity_id
from inbox.models import Conversation, Message


async def thread_key_of(session: AsyncSession, channel: str, provider_ids: list[str]) -> str | None:
    """The thread_key of the conversation holding one of ``provider_ids``; the earliest id
    in the list that is found wins (callers put the nearest parent first)."""
    if not provider_ids:
        return None
    rows = await session.execute(
        select(Message.provider_message_id, Message.external_id, Conversation.thread_key)  # type: ignore[call-overload]
        .join(Conversation, Conversation.id == Message.conversation_id)  # type: ignore[arg-type]
        .where(
            Message.channel == channel,
            or_(
                Message.provider_message_id.in_(provider_ids),  # type: ignore[union-attr]
                Message.external_id.in_(provider_ids),  # type: ignore[union-attr]
            ),
        )
    )
    found: dict[str, str] = {}
    for provider_id, external_id, thread_key in rows.all():
        for key in (provider_id, external_id):
            if key is not None:
                found.setdefault(key, thread_key)
    return next((found[i] for i in provider_ids if i in found), None)


async def thread_key_by_subject(
    session: AsyncSession, channel: str, external_id: str, subject: str
) -> str | None:
    """The thread_key of this sender's latest conversation on ``channel`` with this
    (normalised) subject: the fallback for mail clients that drop the threading headers."""
    if not subject:
        return None
    row = await session.execute(
        select(Conversation.thread_key)  # type: ignore[call-overload]
        .where(
            Conversation.identity_id == identity_id(channel, external_id),
            Conversation.channel == channel,
            Conversation.subject == subject[:300],
        )
        .order_by(Conversation.last_message_at.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    return row.scalar()
