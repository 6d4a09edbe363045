"""Everything the bot says in a team member's Telegram chat, through durable jobs.

One job kind, ``telegram.team_send``, carries every message to a member's chat: a mirrored
customer message, a reply written on another surface, a handoff notice, an intervention or
escalation alert, a command's answer. It is enqueued with a dedupe key in the transaction
that causes it, so a replay or a second listener adds nothing; the handler sends through
``channels.telegram.send_text`` (aiogram's Bot at HELIOGRAPH_TELEGRAM_API_BASE; a 429's
``retry_after`` becomes the job's retry delay) and then records the sent message under the
same key, so a job that runs again after the send finds the row and sends nothing. The one
window left, as for customers' replies, is a crash between Telegram's answer and our commit.

Listeners (``jobs.subscribe``, only when HELIOGRAPH_TELEGRAM_BOT_TOKEN is set): a customer
message goes to the conversation's assignee; a newly assigned conversation brings the
customer card and its unanswered customer messages; a reply from the web or Slack is
shown to the assignee; handoffs go to the receiver with the context package and ``/ack``;
escalations to the leads; interventions to their owner (or the least loaded linked member
on shift).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import pytz
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from channels import telegram
from channels.telegram.settings import TelegramSettings
from crm_core import reads as crm_reads
from crm_core.bus import INTERVENTION_OPENED, InterventionOpened
from handoff import reads as handoff_reads
from handoff.bus import HANDOFF_CREATED, HANDOFF_ESCALATED, HandoffCreated, HandoffEscalated
from heliograph import jobs
from heliograph.db import get_db, is_unique_violation, utcnow
from inbox import path_times
from inbox import reads as inbox_reads
from inbox.assignment import open_loads
from inbox.bus import MESSAGE_RECEIVED, MESSAGE_SENT, ConversationMessage
from inbox.models import Conversation, Message
from routing import reads as routing_reads
from routing.bus import CONVERSATION_ASSIGNED, ConversationAssigned
from routing.models import TeamMember
from routing.schedule import is_on_shift
from surfaces.cards import CHANNEL_NAMES, customer_card
from surfaces.telegram_models import TelegramAgentMessage

log = logging.getLogger(__name__)


class TeamSend(jobs.Payload):
    """One message to a member's chat. The ids say whom the text is about: GDPR erasure
    deletes the job by them (crm_core.gdpr), so the stored JSON keeps these names."""

    chat_id: str
    text: str
    key: str
    kind: str  # what it is (customer, card, reply, handoff, alert, answer, ...)
    member_id: int | None = None
    conversation_id: int | None = None
    message_id: int | None = None
    reply_to: int | None = None
    customer_id: int | None = None


SEND = jobs.JobKind("telegram.team_send", TeamSend, jobs.URGENT)
MIRROR_BACKLOG = 5  # unanswered customer messages brought along with a new assignment
TEAM_ROLES = ("agent", "lead", "admin")  # who works conversations (web.deps.WRITE_ROLES)


def channel_name(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel.title())


def fit(text: str) -> str:
    """At most one Telegram message (4,096 UTF-16 units): the rest is cut with an ellipsis."""
    parts = telegram.channel.split_text(text)
    # Two characters off (at least two UTF-16 units) make room for " …" (two units).
    return parts[0] if len(parts) == 1 else parts[0][:-2] + " …"


def local(at: datetime, zone: str | None) -> datetime:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=pytz.UTC)
    try:
        return aware.astimezone(pytz.timezone(zone or "UTC"))
    except pytz.UnknownTimeZoneError:
        return aware.astimezone(pytz.UTC)


async def queue_send(
    session: AsyncSession,
    chat_id: str,
    text: str,
    *,
    key: str,
    kind: str,
    member_id: int | None = None,
    conversation_id: int | None = None,
    message_id: int | None = None,
    reply_to: int | None = None,
    customer_id: int | None = None,
) -> bool:
    """Enqueue one message to a chat in the caller's transaction; False if ``key`` is known.
    The ids say whom the text is about: GDPR erasure deletes the job by them (crm_core.gdpr)."""
    payload = TeamSend(
        chat_id=chat_id,
        text=fit(text),
        key=key,
        kind=kind,
        member_id=member_id,
        conversation_id=conversation_id,
        message_id=message_id,
        reply_to=reply_to,
        customer_id=customer_id,
    )
    return await jobs.enqueue(session, SEND, payload, dedupe_key=f"tg:{key}") is not None


SEND_AT_ONCE = 8  # chats written to at once (each chat's messages stay in order)


@jobs.batch_handler(SEND, size=100)
async def send(batch: jobs.Batch[TeamSend]) -> None:
    """Send the due messages to the team's Telegram chats together: one read of what went
    out already, chats in parallel (each chat's messages in order), one commit recording
    every sent message with its jobs. A message Telegram refuses fails alone; the later
    messages of its chat wait for it."""
    db = get_db()
    payloads = batch.payloads
    async with db.read_session() as session:
        found = await session.execute(
            select(TelegramAgentMessage.dedupe_key).where(  # type: ignore[call-overload]
                TelegramAgentMessage.dedupe_key.in_([p.key for p in payloads])  # type: ignore[attr-defined]
            )
        )
        done = set(found.scalars().all())  # went out before these jobs ran again
        members = {
            mid: await routing_reads.member(session, mid) for mid in {p.member_id for p in payloads}
        }
    chats: dict[str, list[int]] = {}
    for i, payload in enumerate(payloads):
        member = members.get(payload.member_id)
        about_customers = bool(payload.conversation_id or payload.message_id)
        if (
            member is not None
            and not member.active
            and (about_customers or payload.kind != "answer")
        ):
            continue  # deactivated since it was queued: no customer's words reach their chat
        if payload.key not in done:
            chats.setdefault(payload.chat_id, []).append(i)
    rows: list[TelegramAgentMessage] = []

    async def one(i: int) -> None:
        payload = payloads[i]
        sent_id = await telegram.send_text(payload.chat_id, payload.text, payload.reply_to)
        rows.append(
            TelegramAgentMessage(
                chat_id=payload.chat_id,
                telegram_message_id=sent_id,
                member_id=payload.member_id,
                conversation_id=payload.conversation_id,
                message_id=payload.message_id,
                kind=payload.kind,
                dedupe_key=payload.key,
            )
        )

    await batch.in_lanes(
        chats.values(), one, at_once=SEND_AT_ONCE, held="an earlier message to this chat failed"
    )
    # Telegram accepted these: the customers' messages among them are before the agents.
    notified = [r.message_id for r in rows if r.kind == "customer"]
    try:
        async with db.session() as session:
            session.add_all(rows)
            await path_times.mark_agent_notified(session, notified)
            await batch.complete_in(session)
            await session.commit()
    except IntegrityError as exc:  # a worker whose lease ran out raced on a key
        if not is_unique_violation(exc):
            raise
        await _record_one_by_one(rows, notified)


async def _record_one_by_one(rows: list[TelegramAgentMessage], notified: list[int | None]) -> None:
    """Record what was sent, row by row; where another worker's row stands, it stays."""
    db = get_db()
    for row in rows:
        async with db.session() as session:
            session.add(
                TelegramAgentMessage(
                    **row.model_dump(
                        include={
                            "chat_id",
                            "telegram_message_id",
                            "member_id",
                            "conversation_id",
                            "message_id",
                            "kind",
                            "dedupe_key",
                        }
                    )
                )
            )
            try:
                await session.commit()
            except IntegrityError as exc:
                if not is_unique_violation(exc):
                    raise
    async with db.session() as session:
        await path_times.mark_agent_notified(session, notified)
        await session.commit()


async def to_member(
    session: AsyncSession, member: TeamMember, text: str, about: str, kind: str, **ids: Any
) -> bool:
    """``queue_send`` to a linked member's chat; ``about`` names the event (the dedupe key
    is it and the chat, so one event reaches one chat once)."""
    chat = str(member.telegram_chat_id)
    return await queue_send(
        session, chat, text, key=f"{about}:{chat}", kind=kind, member_id=member.id, **ids
    )


# --- who is reachable -----------------------------------------------------------------------


async def linked(session: AsyncSession, member_id: int | None) -> TeamMember | None:
    member = await routing_reads.member(session, member_id)
    if member is None or not member.active or not member.telegram_chat_id:
        return None
    return member


async def linked_members(session: AsyncSession, roles: tuple[str, ...]) -> list[TeamMember]:
    """Active members with these roles and a linked chat."""
    return [m for m in await routing_reads.active_members(session, roles) if m.telegram_chat_id]


async def _customer_name(session: AsyncSession, customer_id: int) -> str:
    names = await crm_reads.customer_names(session, [customer_id])
    return names.get(customer_id) or crm_reads.label(customer_id, None)


def mirror_text(message: Message, conversation: Conversation, customer: str) -> str:
    head = f"💬 {customer} · {channel_name(conversation.channel)} · #{conversation.id}"
    body = message.text.strip() or "(no text)"
    return f"{head}\n{body}\n\n↩️ Reply to this message to answer {customer}."


async def mirror(
    session: AsyncSession,
    message: Message,
    conversation: Conversation,
    member: TeamMember,
    name: str | None = None,
) -> None:
    """``name``: the customer's, when the caller has it (a backlog reads it once)."""
    name = name or await _customer_name(session, conversation.customer_id)
    await to_member(
        session,
        member,
        mirror_text(message, conversation, name),
        f"mirror:{message.id}",
        "customer",
        conversation_id=conversation.id,
        message_id=message.id,
    )


# --- listeners ------------------------------------------------------------------------------

MIRROR = jobs.JobKind("telegram.team_mirror", ConversationMessage, jobs.URGENT)
ASSIGNED = jobs.JobKind("telegram.team_assigned", ConversationAssigned, jobs.URGENT)
REPLIED = jobs.JobKind("telegram.team_replied", ConversationMessage)
HANDOFF = jobs.JobKind("telegram.team_handoff", HandoffCreated)
ESCALATED = jobs.JobKind("telegram.team_escalated", HandoffEscalated)
INTERVENTION = jobs.JobKind("telegram.team_intervention", InterventionOpened)
P = TypeVar("P", bound=jobs.Payload)
Work = Callable[[AsyncSession, P], Awaitable[None]]


LISTEN_BATCH = 20  # events handled in one transaction (on SQLite it holds the writer)


async def _in_batch(work: Work[P], batch: jobs.Batch[P]) -> None:
    """A listener's due events together: one read to learn whether anybody's chat could
    be told at all (most teams work in Slack or the web app: then nothing more), else one
    transaction for the batch, each event in a savepoint of its own (one that breaks fails
    alone and leaves nothing), the jobs marked done in the same commit."""
    if not TelegramSettings.get().telegram_bot_token:
        return  # Telegram is off: nobody's chat to write to (and no database read for it)
    db = get_db()
    async with db.read_session() as session:
        if not await routing_reads.anyone_on_telegram(session):
            return
    async with db.session() as session:
        for i, payload in enumerate(batch.payloads):
            try:
                async with session.begin_nested():
                    await work(session, payload)
            except Exception as exc:
                batch.fail(i, exc)
        await batch.complete_in(session)
        await session.commit()
    jobs.wake_workers()


async def _mirror_received(session: AsyncSession, payload: ConversationMessage) -> None:
    message = await inbox_reads.message(session, payload.message_id)
    conversation = await inbox_reads.conversation(session, payload.conversation_id)
    if message is None or conversation is None:
        return
    member = await linked(session, conversation.assignee_id)
    if member is not None:  # unassigned yet: the assignment brings it along
        await mirror(session, message, conversation, member)


async def _mirror_assigned(session: AsyncSession, payload: ConversationAssigned) -> None:
    if payload.kind == "handoff":
        return  # the handoff notice (with its context package) says it instead
    member = await linked(session, payload.member_id)
    conversation = await inbox_reads.conversation(session, payload.conversation_id)
    if member is None or conversation is None or conversation.assignee_id != member.id:
        return
    last = await inbox_reads.last_messages(session, [conversation.id], 50)  # type: ignore[list-item]
    recent = list(reversed(last.get(conversation.id, [])))  # type: ignore[arg-type]
    unanswered: list[Message] = []
    for message in recent:  # newest first, back to the last answer
        if message.direction == "out":
            break
        unanswered.append(message)
    card = await customer_card(session, conversation.id)  # type: ignore[arg-type]
    await to_member(
        session,
        member,
        "\n".join(["📥 Yours now: " + card.headline(), *card.lines()[1:]]),
        f"assigned:{payload.assignment_id}",
        "card",
        conversation_id=conversation.id,
    )
    name = await _customer_name(session, conversation.customer_id) if unanswered else None
    for message in reversed(unanswered[:MIRROR_BACKLOG]):
        await mirror(session, message, conversation, member, name)


async def _from_telegram(session: AsyncSession, message_id: int) -> bool:
    row = await session.execute(
        select(TelegramAgentMessage.id).where(  # type: ignore[call-overload]
            TelegramAgentMessage.message_id == message_id, TelegramAgentMessage.kind == "agent"
        )
    )
    return row.first() is not None


async def _mirror_reply(session: AsyncSession, payload: ConversationMessage) -> None:
    """A reply written on the web, in Slack or by the system, shown to a linked assignee."""
    message = await inbox_reads.message(session, payload.message_id)
    conversation = await inbox_reads.conversation(session, payload.conversation_id)
    if message is None or conversation is None or await _from_telegram(session, message.id):  # type: ignore[arg-type]
        return
    member = await linked(session, conversation.assignee_id)
    if member is None:
        return
    author = await routing_reads.member(session, message.author_id)
    who = author.name if author else "Heliograph"
    customer = await _customer_name(session, conversation.customer_id)
    text = f"↪️ #{conversation.id} {who} to {customer}:\n{message.text}"
    await to_member(
        session,
        member,
        text,
        f"reply:{message.id}",
        "reply",
        conversation_id=conversation.id,
        message_id=message.id,
    )


def handoff_text(payload: HandoffCreated, context: dict[str, Any], giver: str, zone: str) -> str:
    customer = context.get("customer", {})
    lines = [
        f"🤝 Handoff #{payload.handoff_id}: #{payload.conversation_id} from {giver}",
        str(customer.get("line") or customer.get("name") or ""),
    ]
    if context.get("summary"):
        lines.append(f"Summary: {context['summary']}")
    if context.get("awaiting"):
        lines.append(f"Awaiting: {context['awaiting']}")
    for m in context.get("messages", [])[-3:]:
        at = local(datetime.fromisoformat(m["at"]), zone)
        lines.append(f"{at:%H:%M} {m['author']}: {' '.join(str(m['text']).split())[:200]}")
    for n in context.get("notes", [])[-2:]:
        lines.append(f"📝 {n['author']}: {' '.join(str(n['text']).split())[:200]}")
    if context.get("handoff_note"):
        lines.append(f"Note: {context['handoff_note']}")
    lines.append(f"Send /ack {payload.handoff_id} when you have it; reply here to answer.")
    return "\n".join(line for line in lines if line)


async def _notify_handoff(session: AsyncSession, payload: HandoffCreated) -> None:
    member = await linked(session, payload.to_member_id)
    row = await handoff_reads.handoff(session, payload.handoff_id)
    if member is None or row is None:
        return
    giver = await routing_reads.member(session, row.from_member_id)
    text = handoff_text(payload, row.context, giver.name if giver else "the queue", member.timezone)
    await to_member(
        session, member, text, f"handoff:{row.id}", "handoff", conversation_id=row.conversation_id
    )


async def _alert_escalated(session: AsyncSession, payload: HandoffEscalated) -> None:
    leads = await linked_members(session, ("lead", "admin"))
    receiver = await routing_reads.member(session, payload.member_id)
    minutes = int(payload.waited_s // 60)
    text = (
        f"⚠️ Handoff #{payload.handoff_id} of #{payload.conversation_id} to "
        f"{receiver.name if receiver else 'nobody'} is {minutes} min without an "
        f"acknowledgement ({payload.reason}). /claim {payload.conversation_id} "
        "or /handoff it."
    )
    for lead in leads:
        about = f"escalated:{payload.handoff_id}"
        await to_member(
            session, lead, text, about, "alert", conversation_id=payload.conversation_id
        )


async def _intervention_owner(session: AsyncSession, owner_id: int | None) -> TeamMember | None:
    now = utcnow()
    owner = await linked(session, owner_id)
    if owner is not None and is_on_shift(owner, now):
        return owner
    candidates = [m for m in await linked_members(session, TEAM_ROLES) if is_on_shift(m, now)]
    if not candidates:
        return owner  # nobody on shift: the owner reads it when they are back
    loads = await open_loads(session, member_ids=[m.id for m in candidates])  # type: ignore[misc]
    return min(candidates, key=lambda m: (loads.get((m.id, ""), 0), m.id))  # type: ignore[arg-type]


async def _alert_intervention(session: AsyncSession, payload: InterventionOpened) -> None:
    member = await _intervention_owner(session, payload.owner_id)
    if member is None:
        return
    lines = [
        f"🔔 {payload.title or payload.rule}: {payload.customer_name} "
        f"({payload.journey_stage or 'no stage'})",
        payload.reason,
    ]
    if payload.suggested_message:
        lines.append(f"Suggested: {payload.suggested_message}")
    if payload.auto_send and payload.send_after:
        at = local(datetime.fromisoformat(payload.send_after), member.timezone)
        lines.append(f"It goes out on its own at {at:%H:%M} your time.")
    about = f"intervention:{payload.intervention_id}"
    text = "\n".join(line for line in lines if line)
    await to_member(session, member, text, about, "alert", customer_id=payload.customer_id)


@dataclass(frozen=True)
class Listener(Generic[P]):
    """An event, the job kind that listens to it here, and what that job does (in one
    transaction of its own)."""

    event: jobs.Event[Any]
    kind: jobs.JobKind[P]
    work: Work[P]


LISTENERS: tuple[Listener[Any], ...] = (
    Listener(MESSAGE_RECEIVED, MIRROR, _mirror_received),
    Listener(CONVERSATION_ASSIGNED, ASSIGNED, _mirror_assigned),
    Listener(MESSAGE_SENT, REPLIED, _mirror_reply),
    Listener(HANDOFF_CREATED, HANDOFF, _notify_handoff),
    Listener(HANDOFF_ESCALATED, ESCALATED, _alert_escalated),
    Listener(INTERVENTION_OPENED, INTERVENTION, _alert_intervention),
)
for _listener in LISTENERS:
    jobs.batch_handler(_listener.kind, size=LISTEN_BATCH)(
        functools.partial(_in_batch, _listener.work)
    )


def listen() -> None:
    """Subscribe the listeners (idempotent). Only with the Telegram channel on: a listener
    is a job per event, and with nobody to tell that cost 11-14% more CPU per inbound
    message (measured on SQLite, ingest plus its jobs)."""
    for listener in LISTENERS:
        jobs.subscribe(listener.event, listener.kind)


if TelegramSettings.get().telegram_bot_token:  # the process's settings, read once at start-up
    listen()
