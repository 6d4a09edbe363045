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

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from channels import slack
from channels.slack.settings import SlackSettings
from crm_core import reads as crm_reads
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
from surfaces.slack_posts import (
    ThreadLines,
    member_slack_id,
    one_session,
    open_dm,
    post_in_threads,
    post_lines,
    post_once,
    update_message,
)

log = logging.getLogger(__name__)
P = TypeVar("P", bound=jobs.Payload)

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
    thread = (await current_threads_many(session, [conversation_id])).get(conversation_id)
    return [thread] if thread is not None else []


async def current_threads_many(
    session: AsyncSession, conversation_ids: list[int]
) -> dict[int, SlackAgentThread]:
    """The thread where each conversation's assignee works on it now (the oldest, should
    there be two), for many conversations in two queries whatever their number."""
    assignees = await inbox_reads.assignees(session, conversation_ids)
    if not assignees:
        return {}
    settings = SlackSettings.get()
    rows = await session.execute(
        select(SlackAgentThread)
        .where(SlackAgentThread.conversation_id.in_(list(assignees)))  # type: ignore[attr-defined]
        .order_by(SlackAgentThread.id)  # type: ignore[arg-type]
    )
    found: dict[int, SlackAgentThread] = {}
    for thread in rows.scalars().all():
        if settings.slack_agent_threads == "channel":
            mine = thread.channel == settings.slack_inbox_channel
        else:
            mine = thread.member_id == assignees[thread.conversation_id]
        if mine:
            found.setdefault(thread.conversation_id, thread)
    return found


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


async def _thread_for(
    conversation_id: int, channel: str, member_id: int | None
) -> tuple[int, str | None]:
    """The thread row for this conversation in ``channel`` (made, or handed to
    ``member_id``): its id and its parent's ts (None: not posted yet)."""
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
        return int(thread.id), thread.ts  # type: ignore[arg-type]


@jobs.batch_handler(ASSIGNED, size=50)
async def on_assigned_batch(batch: jobs.Batch[ConversationAssigned]) -> None:
    """``on_assigned`` for each job; a conversation's in order (``_in_lanes``)."""
    await _in_lanes(batch, lambda p: p.conversation_id, on_assigned)


async def on_assigned(payload: ConversationAssigned) -> None:
    if not enabled():
        return
    conversation_id, member_id = payload.conversation_id, payload.member_id
    channel = await target_channel(member_id)
    if channel is None:
        return  # this member does not work from Slack
    async with get_db().read_session() as session:
        text, blocks = await _card(session, conversation_id)
    thread_id, ts = await _thread_for(conversation_id, channel, member_id)
    if ts is None:  # a new thread: its parent, the ts kept on the thread in the same commit

        async def keep_ts(session: AsyncSession, posted: str) -> None:
            await session.execute(
                update(SlackAgentThread)
                .where(SlackAgentThread.id == thread_id)  # type: ignore[arg-type]
                .values(ts=posted)
            )

        ts = await post_once(f"parent:{thread_id}", channel, text, blocks=blocks, then=keep_ts)
    else:
        await update_message(channel, ts, text, blocks)
    first: list[tuple[str, str]] = []
    if payload.assignment_id:  # why, in the assignment's own words
        what = ":twisted_rightwards_arrows: Assigned" if member_id else ":inbox_tray: Queued"
        reason = slack_escape(payload.reason)
        first.append((f"assigned:{thread_id}:{payload.assignment_id}", f"{what}: {reason}"))
    await sync_thread(thread_id, first)  # the line, then the backlog: posted together


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
    """Each message's line (of one conversation or many): the customers' names and the
    authors' in one query each."""
    if not messages:
        return {}
    conversations = {m.conversation_id for m in messages}
    customers = await inbox_reads.customer_ids(session, conversations)
    names = await crm_reads.customer_names(session, customers.values())
    authors = await routing_reads.member_names(
        session, {m.author_id for m in messages if m.author_id}
    )
    lines = {}
    for m in messages:
        customer_id = customers.get(m.conversation_id, 0)
        customer = names.get(customer_id) or crm_reads.label(customer_id, None)
        lines[m.id] = render_line(m, customer, authors.get(m.author_id or 0))
    return lines  # type: ignore[return-value]


async def sync_thread(thread_id: int, first: list[tuple[str, str]] | None = None) -> None:
    """Post the conversation's messages the thread does not show yet, oldest first;
    ``first`` (lines ``(key, text)``, e.g. why it was assigned) before them, recorded in
    the same commits."""
    first = list(first or [])
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
            if first:
                await post_lines(thread.channel, thread.ts, first)
            return
        keys = {f"mirror:{thread_id}:{m.id}": m.id for m in messages if m.id in lines}
        last = messages[-1].id

        async def mirrored(
            session: AsyncSession, posted: list[str], keys: dict[str, int] = keys, last: int = last
        ) -> None:
            shown = [keys[key] for key in posted if key in keys]
            await _mirrored(session, thread_id, shown, last)

        await post_lines(
            thread.channel,
            thread.ts,  # type: ignore[arg-type]
            first + [(key, lines[message_id]) for key, message_id in keys.items()],  # type: ignore[index]
            then=mirrored,
        )
        first = []
        if len(messages) < BATCH:
            return


SYNC_AT_ONCE = 8  # conversations whose threads are brought up to date concurrently


@jobs.batch_handler(SYNC, size=100)
async def on_messages(batch: jobs.Batch[ConversationMessage]) -> None:
    """Bring the threads of the batch's conversations up to date: one sync per
    conversation however many of its messages are in the batch, several conversations at
    once (their posts overlap in time; each thread's stay in order), over one HTTP session
    to Slack. What the threads lack is read for the whole batch at once (``_catch_up``);
    a thread that needs more than that (its parent not posted yet, more than ``BATCH``
    lines behind) goes through ``sync_thread`` alone. A conversation whose sync fails
    fails its own jobs only."""
    if not enabled():
        return
    indices = batch.groups(lambda p: p.conversation_id)
    async with one_session():
        plans = await _catch_up(list(indices))
        # Threads only behind by what was read: posted together, recorded in one commit.
        simple = {
            c: plan
            for c, plan in plans.items()
            if not plan.more and plan.last > plan.thread.mirrored_to  # type: ignore[operator]
        }
        errors: list[Exception | None]
        try:
            errors, _ = await post_in_threads(
                [_thread_lines(plan) for plan in simple.values()],
                at_once=SYNC_AT_ONCE,
                first=partial(_shown, {k: m for p in simple.values() for k, m in p.keys.items()}),
            )
        except jobs.Defer as exc:  # another worker is claiming these lines: theirs wait
            errors = [exc] * len(simple)
        failed = {c: e for c, e in zip(simple, errors, strict=True) if e is not None}

        async def sync(conversation_id: int) -> None:
            if conversation_id in failed:
                raise failed[conversation_id]
            plan = plans.get(conversation_id)
            if plan is None or plan.more:
                await sync_conversation(conversation_id)
            reopened = any(batch.payloads[i].reopened for i in indices[conversation_id])
            if plan is not None and reopened:
                await refresh_card(conversation_id)  # the buttons come back

        await batch.per_group(indices, sync, at_once=SYNC_AT_ONCE)


@dataclass
class _Plan:
    """One thread's catching up: the lines to post (key -> message id, text)."""

    thread: SlackAgentThread
    keys: dict[str, int]
    lines: dict[int, str]
    last: int  # the last message read: the mirror mark moves there
    more: bool  # more than BATCH messages behind, or the parent not posted: sync_thread


async def _catch_up(conversation_ids: list[int]) -> dict[int, _Plan]:
    """For each conversation with a current thread: what that thread lacks, read for all
    of them in a few queries (threads, messages, Slack-authored ones, names)."""
    async with get_db().read_session() as session:
        threads = await current_threads_many(session, conversation_ids)
        if not threads:
            return {}
        behind = await inbox_reads.messages_after_many(
            session, {c: t.mirrored_to for c, t in threads.items()}, BATCH
        )
        ids = [m.id for found in behind.values() for m in found]
        from_slack = set(
            (
                await session.execute(
                    select(SlackAgentEvent.message_id).where(  # type: ignore[call-overload]
                        SlackAgentEvent.message_id.in_(ids)  # type: ignore[union-attr]
                    )
                )
            )
            .scalars()
            .all()
        )
        shown = [m for found in behind.values() for m in found if m.id not in from_slack]
        lines = await _rendered(session, shown)
    plans = {}
    for conversation_id, thread in threads.items():
        messages = behind.get(conversation_id, [])
        keys = {f"mirror:{thread.id}:{m.id}": m.id for m in messages if m.id in lines}
        plans[conversation_id] = _Plan(
            thread,
            keys,
            {m.id: lines[m.id] for m in messages if m.id in lines},  # type: ignore[index]
            messages[-1].id if messages else thread.mirrored_to,  # type: ignore[arg-type]
            thread.ts is None or len(messages) >= BATCH,
        )
    return plans


def _thread_lines(plan: _Plan) -> ThreadLines:
    """The plan's lines for its thread (``post_in_threads``); the thread's mirror mark
    moves in the same commit that records them (the batch's messages are stamped there
    at once, ``_shown``)."""
    thread, last = plan.thread, plan.last

    async def mirrored(session: AsyncSession, _: list[str]) -> None:
        await _move_mark(session, thread.id, last)  # type: ignore[arg-type]

    return ThreadLines(
        thread.channel,
        thread.ts,  # type: ignore[arg-type]
        [(key, plan.lines[message_id]) for key, message_id in plan.keys.items()],
        then=mirrored,
    )


async def _shown(keys: dict[str, int], session: AsyncSession, posted: list[str]) -> None:
    """Slack accepted the posts ``posted`` (keys of ``keys``): the customers' messages they
    show are before the agents now, stamped in one statement for the batch."""
    await path_times.mark_agent_notified(session, [keys[key] for key in posted])


async def _mirrored(session: AsyncSession, thread_id: int, shown: list[int], last: int) -> None:
    """Slack accepted the posts showing ``shown``: those customers' messages are before the
    agent now; the thread's mirror mark moves to ``last`` (an agent's Slack reply is in
    the thread already: it only moves the mark)."""
    await path_times.mark_agent_notified(session, shown)
    await _move_mark(session, thread_id, last)


async def _move_mark(session: AsyncSession, thread_id: int, last: int) -> None:
    """The thread shows the conversation up to message ``last``."""
    await session.execute(
        update(SlackAgentThread)
        .where(
            SlackAgentThread.id == thread_id,  # type: ignore[arg-type]
            SlackAgentThread.mirrored_to < last,  # type: ignore[arg-type, operator]
        )
        .values(mirrored_to=last)
    )


async def sync_conversation(conversation_id: int, *, reopened: bool = False) -> None:
    async with get_db().read_session() as session:
        threads = await current_threads(session, conversation_id)
    for thread in threads:
        await sync_thread(thread.id)  # type: ignore[arg-type]
    if reopened and threads:
        await refresh_card(conversation_id)  # "resolved" no more: the buttons come back


@jobs.batch_handler(REFRESH_LINE, size=50)
async def on_messages_changed(batch: jobs.Batch[MessageRef]) -> None:
    """A translation, transcript or edit came after a line was mirrored: update the line
    (``chat.update``) in each thread that shows it. The batch's messages, their threads,
    their posts and their lines are read in a few queries for all of them; the updates go
    several at once over one HTTP session. A message's jobs (translated, then edited)
    share one update, of the message as it is now; a failed update fails that message's
    jobs alone."""
    if not enabled():
        return
    indices = batch.groups(lambda p: p.message_id)
    async with get_db().read_session() as session:
        messages = await inbox_reads.messages_by_id(session, indices)
        if not messages:
            return
        conversations = {m.conversation_id for m in messages.values()}
        threads = (
            (
                await session.execute(
                    select(SlackAgentThread).where(
                        SlackAgentThread.conversation_id.in_(conversations)  # type: ignore[attr-defined]
                    )
                )
            )
            .scalars()
            .all()
        )
        keys = {
            f"mirror:{t.id}:{m.id}": (t, m.id)
            for m in messages.values()
            for t in threads
            if t.conversation_id == m.conversation_id
        }
        posts = (
            (
                await session.execute(
                    select(SlackAgentPost.key, SlackAgentPost.ts).where(  # type: ignore[call-overload]
                        SlackAgentPost.key.in_(list(keys))  # type: ignore[attr-defined]
                    )
                )
            )
            .tuples()
            .all()
        )
        lines = await _rendered(session, list(messages.values()))
    updates: dict[int, list[tuple[str, str | None]]] = {}
    for key, ts in posts:  # a line not mirrored yet: the mirror reads the message as it is
        thread, message_id = keys[key]
        updates.setdefault(message_id, []).append((thread.channel, ts))

    async def update(message_id: int) -> None:
        for channel, ts in updates[message_id]:
            if not ts:
                raise jobs.RetryLater("the line is being posted; update it afterwards")
            await update_message(channel, ts, lines[message_id])

    async with one_session():
        await batch.per_group({m: indices[m] for m in updates}, update, at_once=SYNC_AT_ONCE)


@jobs.batch_handler(REFRESH_CARD, size=50)
async def on_status_changed(batch: jobs.Batch[ConversationRef]) -> None:
    await _in_lanes(batch, lambda p: p.conversation_id, lambda p: refresh_card(p.conversation_id))


async def _in_lanes(
    batch: jobs.Batch[P], lane: Callable[[P], int], work: Callable[[P], Awaitable[None]]
) -> None:
    """Each job's ``work``, over one HTTP session to Slack (a new connection per call
    cost more CPU than the call): the jobs of one lane (a conversation, a message) in
    order, several lanes at once. A job whose work fails fails alone; the later ones of
    its lane wait for it (deferred)."""
    if not enabled():
        return
    async with one_session():
        await batch.in_lanes(
            batch.groups(lane).values(),
            lambda i: work(batch.payloads[i]),
            at_once=SYNC_AT_ONCE,
            held="an earlier job of the same conversation failed",
        )


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
