"""Agents in Slack: one thread per assigned conversation, kept in step by durable jobs.

``conversation.assigned`` posts the parent message (the customer card and its buttons) in
the inbox channel, or in the agent's DM with the app (``slack_agent_threads``), then the
conversation's recent messages as thread replies. After that every customer message
(``message.received``) and every reply written on another surface (``message.sent``) is
mirrored in order; a translation, transcript or edit arriving later updates the mirrored
line (``chat.update``); status changes refresh the card; handoff notices (with an
Acknowledge button), escalations and ``intervention.opened`` alerts go in the thread too.
What agents write there is handled in ``surfaces.slack_inbound``.

Handoff notices, escalations and intervention alerts: ``surfaces.slack_alerts``; every
post goes through ``surfaces.slack_posts.post_once`` (retried, never duplicated).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from channels import slack
from channels.slack.settings import SlackSettings
from heliograph import jobs
from heliograph.db import get_db, utcnow
from inbox import path_times
from inbox import reads as inbox_reads
from inbox.bus import (
    ATTACHMENT_TRANSCRIBED,
    CONVERSATION_STATUS_CHANGED,
    MESSAGE_EDITED,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    MESSAGE_TRANSLATED,
    ConversationMessage,
    ConversationRef,
    MessageRef,
)
from inbox.models import Message
from inbox.translation import words
from routing import reads as routing_reads
from routing.bus import CONVERSATION_ASSIGNED, ConversationAssigned
from surfaces.cards import customer_card, slack_blocks, slack_escape
from surfaces.models import SlackAgentEvent, SlackAgentPost, SlackAgentThread
from surfaces.slack_posts import member_slack_id, open_dm, post_lines, post_once, update_message

log = logging.getLogger(__name__)

BACKLOG = 10  # messages a new thread starts with
BATCH = 50

ASSIGNED = jobs.JobKind("slack_agents.assigned", ConversationAssigned, jobs.URGENT)
SYNC = jobs.JobKind("slack_agents.sync", ConversationMessage, jobs.URGENT)  # received or sent
REFRESH_LINE = jobs.JobKind("slack_agents.refresh_line", MessageRef)  # changed after it
REFRESH_CARD = jobs.JobKind("slack_agents.refresh_card", ConversationRef)
LISTENERS: tuple[tuple[jobs.Event[Any], jobs.JobKind[Any]], ...] = (
    (CONVERSATION_ASSIGNED, ASSIGNED),
    (MESSAGE_RECEIVED, SYNC),
    (MESSAGE_SENT, SYNC),
    (MESSAGE_TRANSLATED, REFRESH_LINE),
    (MESSAGE_EDITED, REFRESH_LINE),
    (ATTACHMENT_TRANSCRIBED, REFRESH_LINE),
    (CONVERSATION_STATUS_CHANGED, REFRESH_CARD),
)


def listen() -> None:
    """Subscribe the thread listeners (idempotent). Only with agent threads on (checked
    once at start-up, at the end of this module), as for Telegram: each listener is a job
    per event, and with Slack off those jobs only return. Measured with bench/routing.py:
    a 5,000-conversation shift change took 4.7-5.6 s on SQLite with them, 3.7 s without."""
    for event, kind in LISTENERS:
        jobs.subscribe(event, kind)


def enabled() -> bool:
    s = SlackSettings.get()
    if not slack.adapter.enabled() or s.slack_agent_threads == "off":
        return False
    return s.slack_agent_threads == "dm" or bool(s.slack_inbox_channel)


# --- where a member's threads go ------------------------------------------------------


async def target_channel(member_id: int | None) -> str | None:
    """Where this member's conversation threads are posted, or None (not in Slack)."""
    settings = SlackSettings.get()
    if settings.slack_agent_threads == "channel":
        return settings.slack_inbox_channel or None
    user = await member_slack_id(member_id)
    return await open_dm(user) if user else None


async def thread_of(
    session: AsyncSession, conversation_id: int, member_id: int | None
) -> SlackAgentThread | None:
    """The conversation's thread that ``member_id`` works in: in channel mode the one in
    the inbox channel (whoever holds it), in DM mode the one in that member's DM."""
    settings = SlackSettings.get()
    mine = (
        SlackAgentThread.channel == settings.slack_inbox_channel
        if settings.slack_agent_threads == "channel"
        else SlackAgentThread.member_id == member_id
    )
    rows = await session.execute(
        select(SlackAgentThread).where(
            SlackAgentThread.conversation_id == conversation_id,  # type: ignore[arg-type]
            mine,  # type: ignore[arg-type]
        )
    )
    return rows.scalars().first()


async def current_threads(session: AsyncSession, conversation_id: int) -> list[SlackAgentThread]:
    """The thread (none or one) where the conversation's assignee works on it now."""
    conversation = await inbox_reads.conversation(session, conversation_id)
    if conversation is None:
        return []
    thread = await thread_of(session, conversation_id, conversation.assignee_id)
    return [thread] if thread is not None else []


async def agent_dm(channel: str) -> bool:
    """Is this DM an agent's (it holds conversation threads)? Asked by ``channels.slack``."""
    if not channel.startswith("D"):
        return False
    async with get_db().read_session() as session:
        found = await session.execute(
            select(SlackAgentThread.id).where(SlackAgentThread.channel == channel).limit(1)  # type: ignore[call-overload, arg-type]
        )
        return found.first() is not None


slack.agent_dm_checks.append(agent_dm)


# --- the parent message ---------------------------------------------------------------


async def _card(session: AsyncSession, conversation_id: int) -> tuple[str, list[dict[str, Any]]]:
    card = await customer_card(session, conversation_id)
    mention = f"<@{card.assignee_slack_id}> " if card.assignee_slack_id else ""
    return mention + slack_escape(" · ".join(card.lines()[:3])), slack_blocks(card)


async def _thread_for(conversation_id: int, channel: str, member_id: int | None) -> int:
    """The thread row for this conversation in ``channel`` (made, or handed to ``member_id``)."""
    async with get_db().session() as session:
        found = await session.execute(
            select(SlackAgentThread).where(
                SlackAgentThread.conversation_id == conversation_id,  # type: ignore[arg-type]
                SlackAgentThread.channel == channel,  # type: ignore[arg-type]
            )
        )
        thread = found.scalar_one_or_none()
        if thread is None:
            recent = await inbox_reads.last_messages(session, [conversation_id], BACKLOG + 1)
            ids: list[int] = [m.id for m in reversed(recent.get(conversation_id, []))]  # type: ignore[misc]
            start = ids[BACKLOG] if len(ids) > BACKLOG else 0
            thread = SlackAgentThread(
                conversation_id=conversation_id, channel=channel, mirrored_to=start
            )
            session.add(thread)
        thread.member_id, thread.updated_at = member_id, utcnow()
        try:
            await session.commit()
        except IntegrityError:
            raise jobs.Defer("another worker is making this thread", 1.0) from None
        return int(thread.id)  # type: ignore[arg-type]


@jobs.handler(ASSIGNED)
async def on_assigned(payload: ConversationAssigned) -> None:
    if not enabled():
        return
    conversation_id, member_id = payload.conversation_id, payload.member_id
    channel = await target_channel(member_id)
    if channel is None:
        return  # this member does not work from Slack
    async with get_db().read_session() as session:
        text, blocks = await _card(session, conversation_id)
    thread_id = await _thread_for(conversation_id, channel, member_id)
    async with get_db().read_session() as session:
        thread = await session.get(SlackAgentThread, thread_id)
        assert thread is not None
        had_parent = thread.ts is not None
    ts = await post_once(f"parent:{thread_id}", channel, text, blocks=blocks)
    if not had_parent:
        async with get_db().session() as session:
            await session.execute(
                update(SlackAgentThread).where(SlackAgentThread.id == thread_id).values(ts=ts)  # type: ignore[arg-type]
            )
            await session.commit()
    else:
        await update_message(channel, ts, text, blocks)
    if payload.assignment_id:  # why, in the assignment's own words
        what = ":twisted_rightwards_arrows: Assigned" if member_id else ":inbox_tray: Queued"
        reason = slack_escape(payload.reason)
        await post_once(
            f"assigned:{thread_id}:{payload.assignment_id}",
            channel,
            f"{what}: {reason}",
            thread_ts=ts,
        )
    await sync_thread(thread_id)


# --- mirrored messages ----------------------------------------------------------------


def render_line(message: Message, customer: str, author: str | None) -> str:
    """One message as the agent reads it: in their language, the customer's own words below."""
    text = slack_escape(message.text or "(no text)")
    if message.author_type == "customer":
        line = f"*{slack_escape(customer)}:* {text}"
        if message.translation_status == "done" and message.original_text is not None:
            lang = message.original_language or "original"
            line += f"\n> _{lang}:_ {slack_escape(message.original_text)}"
        return line
    if message.author_type == "agent":
        return f"*{slack_escape(author or 'agent')}* (reply): {slack_escape(words(message))}"
    return f"_Heliograph:_ {text}"


async def _rendered(session: AsyncSession, messages: list[Message]) -> dict[int, str]:
    if not messages:
        return {}
    card = await customer_card(session, messages[0].conversation_id)
    names = await routing_reads.member_names(
        session, {m.author_id for m in messages if m.author_id}
    )
    return {
        m.id: render_line(m, card.name, names.get(m.author_id or 0))  # type: ignore[misc]
        for m in messages
    }


async def sync_thread(thread_id: int) -> None:
    """Post the conversation's messages the thread does not show yet, oldest first."""
    while True:
        async with get_db().read_session() as session:
            thread = await session.get(SlackAgentThread, thread_id)
            if thread is None:
                return
            if thread.ts is None:
                raise jobs.RetryLater("the thread's parent message is not posted yet")
            messages = await inbox_reads.messages_after(
                session, thread.conversation_id, thread.mirrored_to, BATCH
            )
            from_slack = set(
                (
                    await session.execute(
                        select(SlackAgentEvent.message_id).where(  # type: ignore[call-overload]
                            SlackAgentEvent.message_id.in_([m.id for m in messages])  # type: ignore[union-attr]
                        )
                    )
                )
                .scalars()
                .all()
            )
            lines = await _rendered(session, [m for m in messages if m.id not in from_slack])
        if not messages:
            return
        keys = {f"mirror:{thread_id}:{m.id}": m.id for m in messages if m.id in lines}
        last = messages[-1].id

        async def mirrored(
            session: AsyncSession, posted: list[str], keys: dict[str, int] = keys, last: int = last
        ) -> None:
            # Slack accepted them: those customers' messages are before the agent now.
            await path_times.mark_agent_notified(session, [keys[key] for key in posted])
            await session.execute(
                update(SlackAgentThread)
                .where(
                    SlackAgentThread.id == thread_id,  # type: ignore[arg-type]
                    SlackAgentThread.mirrored_to < last,  # type: ignore[arg-type, operator]
                )
                .values(mirrored_to=last)
            )

        # An agent's Slack reply is in the thread already: it only moves the mark.
        await post_lines(
            thread.channel,
            thread.ts,  # type: ignore[arg-type]
            [(key, lines[message_id]) for key, message_id in keys.items()],  # type: ignore[index]
            then=mirrored,
        )
        if len(messages) < BATCH:
            return


SYNC_AT_ONCE = 8  # conversations whose threads are brought up to date concurrently


@jobs.batch_handler(SYNC, size=100)
async def on_messages(batch: jobs.Batch[ConversationMessage]) -> None:
    """Bring the threads of the batch's conversations up to date: one sync per
    conversation however many of its messages are in the batch, several conversations at
    once (their posts overlap in time; each thread's stay in order). A conversation whose
    sync fails fails its own jobs only."""
    if not enabled():
        return
    indices: dict[int, list[int]] = {}
    for i, payload in enumerate(batch.payloads):
        indices.setdefault(payload.conversation_id, []).append(i)
    limit = asyncio.Semaphore(SYNC_AT_ONCE)

    async def sync(conversation_id: int, which: list[int]) -> None:
        async with limit:
            try:
                await sync_conversation(
                    conversation_id, reopened=any(batch.payloads[i].reopened for i in which)
                )
            except Exception as exc:
                for i in which:
                    batch.fail(i, exc)

    await asyncio.gather(*(sync(c, which) for c, which in indices.items()))


async def sync_conversation(conversation_id: int, *, reopened: bool = False) -> None:
    async with get_db().read_session() as session:
        threads = await current_threads(session, conversation_id)
    for thread in threads:
        await sync_thread(thread.id)  # type: ignore[arg-type]
    if reopened and threads:
        await refresh_card(conversation_id)  # "resolved" no more: the buttons come back


@jobs.handler(REFRESH_LINE)
async def on_message_changed(payload: MessageRef) -> None:
    """A translation, transcript or edit came after the line was mirrored: update it."""
    if not enabled():
        return
    message_id = payload.message_id
    async with get_db().read_session() as session:
        message = await inbox_reads.message(session, message_id)
        if message is None:
            return
        threads = await session.execute(
            select(SlackAgentThread).where(
                SlackAgentThread.conversation_id == message.conversation_id  # type: ignore[arg-type]
            )
        )
        posts = [
            (t, await session.get(SlackAgentPost, f"mirror:{t.id}:{message_id}"))
            for t in threads.scalars().all()
        ]
        line = (await _rendered(session, [message]))[message_id]
    for thread, post in posts:
        if post is None:
            continue  # not mirrored yet: the mirror will read the message as it is now
        if not post.ts:
            raise jobs.RetryLater("the line is being posted; update it afterwards")
        await update_message(thread.channel, post.ts, line)


@jobs.handler(REFRESH_CARD)
async def on_status_changed(payload: ConversationRef) -> None:
    if enabled():
        await refresh_card(payload.conversation_id)


async def refresh_card(conversation_id: int) -> None:
    async with get_db().read_session() as session:
        rows = await session.execute(
            select(SlackAgentThread).where(
                SlackAgentThread.conversation_id == conversation_id,  # type: ignore[arg-type]
                SlackAgentThread.ts.is_not(None),  # type: ignore[union-attr]
            )
        )
        threads = list(rows.scalars().all())
        if not threads:
            return
        text, blocks = await _card(session, conversation_id)
    for thread in threads:
        await update_message(thread.channel, thread.ts, text, blocks)  # type: ignore[arg-type]


if enabled():  # the process's settings, read once at start-up
    listen()
