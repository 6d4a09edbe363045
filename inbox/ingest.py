"""``accept()``: one inbound message, one transaction (DESIGN.md, "The path of one message").

dedupe -> identity -> thread -> store -> jobs, all committed together, so a webhook that
answers 200 after ``accept`` returns has the message on disk, and a replay finds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import Resolved, SenderProfile, resolve_customer
from heliograph import jobs
from heliograph.db import Database, is_unique_violation, utcnow
from heliograph.settings import get_settings
from inbox.models import Attachment, Conversation, Message

_THREAD_TRIES = 5


@dataclass
class InboundAttachment:
    kind: str  # image, audio, video, file
    url: str | None = None
    content_type: str | None = None
    filename: str | None = None
    size: int | None = None
    provider_file_id: str | None = None


@dataclass
class InboundMessage:
    """What every channel adapter turns a provider's payload into."""

    channel: str
    provider_message_id: str
    sender: SenderProfile
    text: str = ""
    sent_at: datetime | None = None
    attachments: list[InboundAttachment] = field(default_factory=list)
    thread_key: str = ""
    subject: str | None = None
    raw: dict[str, Any] | None = None
    # A consent keyword (SMS STOP / START): True opts the sender out of this channel,
    # False back in; applied with the message, never on a replay (inbox/intake.py).
    consent: bool | None = None


@dataclass(frozen=True)
class AcceptResult:
    message_id: int
    conversation_id: int
    customer_id: int
    duplicate: bool
    new_conversation: bool = False
    provider_message_id: str = ""


def new_conversation(
    msg: InboundMessage, customer_id: int, identity_id: int, language: str | None, vip: bool
) -> dict[str, Any]:
    """The values of the conversation a customer's first message on a thread opens."""
    return {
        "customer_id": customer_id,
        "identity_id": identity_id,
        "channel": msg.channel,
        "thread_key": msg.thread_key,
        "subject": msg.subject,
        "language": language,
        "language_source": "customer" if language else None,
        "priority": "high" if vip else "normal",
    }


def received_event(
    message_id: int,
    conversation_id: int,
    customer_id: int,
    msg: InboundMessage,
    *,
    created: bool,
    reopened: bool,
) -> dict[str, Any]:
    """The payload of ``message.received``, which every follow-up job of a message gets."""
    return {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "customer_id": customer_id,
        "new_conversation": created,
        "reopened": reopened,
        "has_attachments": bool(msg.attachments),
    }


async def _existing(session: AsyncSession, channel: str, provider_id: str) -> AcceptResult | None:
    row = (
        await session.execute(
            select(Message.id, Message.conversation_id, Message.customer_id).where(
                Message.channel == channel, Message.provider_message_id == provider_id
            )
        )
    ).first()
    if row is None:
        return None
    return AcceptResult(row[0], row[1], row[2], duplicate=True, provider_message_id=provider_id)


async def _thread(
    session: AsyncSession, resolved: Resolved, msg: InboundMessage
) -> tuple[Conversation, bool, str]:
    """The customer's unresolved conversation on this channel/thread, a recent one reopened,
    or a new one. Returns ``(conversation, created, its status before)``."""
    customer_id = resolved.customer.id
    base = select(Conversation).where(
        Conversation.customer_id == customer_id,
        Conversation.channel == msg.channel,
        Conversation.thread_key == msg.thread_key,
    )
    window = timedelta(hours=get_settings().reopen_window_hours)
    for _ in range(_THREAD_TRIES):
        active = (await session.execute(base.where(Conversation.status != "resolved"))).scalar()
        if active is not None:
            return active, False, active.status
        recent = (
            await session.execute(
                base.where(
                    Conversation.status == "resolved",
                    Conversation.resolved_at >= utcnow() - window,  # type: ignore[operator]
                ).order_by(Conversation.resolved_at.desc())  # type: ignore[union-attr]
            )
        ).scalar()
        try:
            async with session.begin_nested():
                if recent is not None:
                    recent.status, recent.resolved_at = "open", None
                    conversation, created, before = recent, False, "resolved"
                else:
                    conversation = Conversation(
                        **new_conversation(
                            msg,
                            customer_id,  # type: ignore[arg-type]
                            resolved.identity.id,  # type: ignore[arg-type]
                            resolved.customer.language,
                            resolved.customer.vip,
                        )
                    )
                    session.add(conversation)
                    created, before = True, "open"
                await session.flush()
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            continue  # another message opened it first: join that one
        return conversation, created, before
    raise RuntimeError(f"could not thread message {msg.channel}:{msg.provider_message_id}")


async def accept_in(session: AsyncSession, msg: InboundMessage) -> AcceptResult:
    """The body of ``accept`` inside the caller's transaction, one message at a time: for
    channels that need their own transaction around it (edits, email), and the path a
    failed batch falls back to. Savepoints and retries settle races with other writers."""
    existing = await _existing(session, msg.channel, msg.provider_message_id)
    if existing is not None:
        return existing
    resolved = await resolve_customer(session, msg.sender)
    conversation, created, before = await _thread(session, resolved, msg)
    now = utcnow()
    message = Message(
        conversation_id=conversation.id,  # type: ignore[arg-type]
        customer_id=resolved.customer.id,  # type: ignore[arg-type]
        channel=msg.channel,
        direction="in",
        author_type="customer",
        text=msg.text,
        provider_message_id=msg.provider_message_id,
        sent_at=msg.sent_at,
        raw=msg.raw,
    )
    try:
        async with session.begin_nested():
            session.add(message)
            await session.flush()
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        # A concurrent replay committed first; report its row.
        winner = await _existing(session, msg.channel, msg.provider_message_id)
        if winner is None:
            raise
        return winner
    for item in msg.attachments:
        attachment = Attachment(message_id=message.id, **item.__dict__)  # type: ignore[arg-type]
        session.add(attachment)
        await session.flush()
        await jobs.enqueue(
            session,
            "attachment.fetch",
            {"attachment_id": attachment.id},
            dedupe_key=f"fetch:{attachment.id}",
        )
    reopened = before != "open"
    conversation.status = "open"
    conversation.snoozed_until = None
    conversation.identity_id = resolved.identity.id
    conversation.last_message_at = now
    conversation.updated_at = now
    if conversation.waiting_since is None:
        conversation.waiting_since = now
    event = received_event(
        message.id,  # type: ignore[arg-type]
        conversation.id,  # type: ignore[arg-type]
        resolved.customer.id,  # type: ignore[arg-type]
        msg,
        created=created,
        reopened=reopened and not created,
    )
    await jobs.publish(session, "message.received", event)
    return AcceptResult(
        message.id,  # type: ignore[arg-type]
        conversation.id,  # type: ignore[arg-type]
        resolved.customer.id,  # type: ignore[arg-type]
        duplicate=False,
        new_conversation=created,
        provider_message_id=msg.provider_message_id,
    )


async def accept(db: Database, msg: InboundMessage) -> AcceptResult:
    """Store one inbound message; return only once it is committed. Concurrent calls share
    one transaction (group commit, ``inbox.ingest_batch``)."""
    from inbox.ingest_batch import writer_for  # it builds on this module

    return await writer_for(db).submit(msg)
