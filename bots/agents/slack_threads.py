"""Agents in Slack: one thread per assigned conversation, kept in step by durable jobs.

``conversation.assigned`` posts the parent message (the customer card and its buttons) in
the inbox channel, or in the agent's DM with the app (``slack_agent_threads``), then the
conversation's recent messages as thread replies. After that every customer message
(``message.received``) and every reply written on another surface (``message.sent``) is
mirrored in order; a translation, transcript or edit arriving later updates the mirrored
line (``chat.update``); status changes refresh the card; handoff notices (with an
Acknowledge button), escalations and ``intervention.opened`` alerts go in the thread too.
What agents write there is handled in ``bots.agents.slack_inbound``.

Never twice: Slack's ``chat.postMessage`` has no idempotency key, so each post has a key
of ours (``SlackAgentPost``), committed as "sending" before the call and carried in the
message's metadata (https://docs.slack.dev/messaging/message-metadata). When an earlier
try failed, Slack may have the message anyway (the answer was lost): the retry first looks
for a message with that key in the thread (``conversations.replies``) or channel
(``conversations.history``, ``include_all_metadata``) and adopts its ts instead of posting
again. A 429 or 5xx is a ``RetryLater`` (``bots.slack.api_call``), honouring Retry-After.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from bots import slack
from bots.agents.cards import customer_card, slack_blocks, slack_escape
from bots.agents.models import SlackAgentEvent, SlackAgentPost, SlackAgentThread
from handoff.models import Handoff
from heliograph import jobs
from heliograph.db import get_db, utcnow
from heliograph.settings import get_settings
from inbox.models import Conversation, Message
from inbox.translation import words
from routing.models import TeamMember

log = logging.getLogger(__name__)

METADATA_TYPE = "heliograph_post"
BACKLOG = 10  # messages a new thread starts with
BATCH = 50

ASSIGNED, SYNC, REFRESH_LINE, REFRESH_CARD = (
    "slack_agents.assigned",
    "slack_agents.sync",
    "slack_agents.refresh_line",
    "slack_agents.refresh_card",
)
HANDOFF, ESCALATED, INTERVENTION = (
    "slack_agents.handoff",
    "slack_agents.escalated",
    "slack_agents.intervention",
)
jobs.subscribe("conversation.assigned", ASSIGNED)
jobs.subscribe("message.received", SYNC)
jobs.subscribe("message.sent", SYNC)
for _event in ("message.translated", "message.edited", "attachment.transcribed"):
    jobs.subscribe(_event, REFRESH_LINE)
jobs.subscribe("conversation.status_changed", REFRESH_CARD)
jobs.subscribe("handoff.created", HANDOFF)
jobs.subscribe("handoff.escalated", ESCALATED)
jobs.subscribe("intervention.opened", INTERVENTION)


def enabled() -> bool:
    s = get_settings()
    if not slack.adapter.enabled() or s.slack_agent_threads == "off":
        return False
    return s.slack_agent_threads == "dm" or bool(s.slack_inbox_channel)


# --- posting once ---------------------------------------------------------------------


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def post_once(
    key: str,
    channel: str,
    text: str,
    *,
    thread_ts: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> str:
    """Post ``text`` (and ``blocks``) once under ``key``; the ts Slack gave it."""
    db = get_db()
    now = utcnow()
    async with db.session() as session:
        row = await session.get(SlackAgentPost, key)
        if row is not None and row.ts:
            return row.ts
        earlier = row is not None  # a try before this one may have reached Slack
        created_at = _aware(row.created_at) if row is not None else now
        lease = now + timedelta(seconds=get_settings().outbound_timeout_s * 2 + 10)
        if row is None:
            session.add(
                SlackAgentPost(
                    key=key, channel=channel, thread_ts=thread_ts, lease_until=lease, created_at=now
                )
            )
        else:
            taken = await session.execute(
                update(SlackAgentPost)
                .where(
                    SlackAgentPost.key == key,  # type: ignore[arg-type]
                    or_(
                        SlackAgentPost.state != "sending",  # type: ignore[arg-type]
                        SlackAgentPost.lease_until < now,  # type: ignore[arg-type, operator]
                    ),
                )
                .values(state="sending", lease_until=lease)
            )
            if not taken.rowcount:  # type: ignore[attr-defined]
                raise jobs.Defer(f"another worker is posting {key}", 2.0)
        try:
            await session.commit()
        except IntegrityError:
            raise jobs.Defer(f"another worker began posting {key}", 1.0) from None
    try:
        ts = await _find_posted(key, channel, thread_ts, created_at) if earlier else None
        if ts is None:
            ts = await _post(key, channel, text, thread_ts, blocks)
    except BaseException:
        await _set_post(key, state="unknown", lease_until=None)
        raise
    await _set_post(key, state="posted", ts=ts, lease_until=None)
    return ts


async def _set_post(key: str, **values: Any) -> None:
    async with get_db().session() as session:
        await session.execute(
            update(SlackAgentPost).where(SlackAgentPost.key == key).values(**values)  # type: ignore[arg-type]
        )
        await session.commit()


async def _post(
    key: str,
    channel: str,
    text: str,
    thread_ts: str | None,
    blocks: list[dict[str, Any]] | None,
) -> str:
    args: dict[str, Any] = {
        "channel": channel,
        "text": text,
        "metadata": {"event_type": METADATA_TYPE, "event_payload": {"key": key}},
        "unfurl_links": False,
    }
    if thread_ts:
        args["thread_ts"] = thread_ts
    if blocks:
        args["blocks"] = blocks
    response = await slack.api_call(slack.web_client().chat_postMessage, **args)
    return str(response["ts"])


async def _find_posted(
    key: str, channel: str, thread_ts: str | None, since: datetime
) -> str | None:
    """The ts of a message we posted under ``key`` (a try whose answer was lost)."""
    client = slack.web_client()
    cursor = None
    for _ in range(5):  # 5 pages of 200: far more than a thread or a minute of a channel
        page: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
        if cursor:
            page["cursor"] = cursor
        if thread_ts:
            answer = await slack.api_call(client.conversations_replies, ts=thread_ts, **page)
        else:
            oldest = f"{since.timestamp() - 60:.6f}"
            answer = await slack.api_call(client.conversations_history, oldest=oldest, **page)
        for message in answer.get("messages") or []:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == key:
                log.info("Slack already had %s (an answer was lost); not posting it again", key)
                return str(message["ts"])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


async def update_message(channel: str, ts: str, text: str, blocks: list[Any] | None = None) -> None:
    """``chat.update`` sets the message to what it should show: repeating it is harmless."""
    args: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
    if blocks is not None:
        args["blocks"] = blocks
    await slack.api_call(slack.web_client().chat_update, **args)


# --- where a member's threads go ------------------------------------------------------


async def member_slack_id(member_id: int | None) -> str | None:
    """The member's Slack user id; found by email (users.lookupByEmail) the first time and
    kept. No database transaction is held open across the Slack call."""
    if member_id is None:
        return None
    async with get_db().read_session() as session:
        member = await session.get(TeamMember, member_id)
    if member is None or member.slack_user_id:
        return member.slack_user_id if member else None
    try:
        found = await slack.api_call(slack.web_client().users_lookupByEmail, email=member.email)
    except jobs.PermanentFailure:  # users_not_found: they are not in the workspace
        return None
    user = str(found["user"]["id"])
    await store_slack_id(member_id, user)
    return user


async def store_slack_id(member_id: int, user: str) -> None:
    async with get_db().session() as session:
        await session.execute(
            update(TeamMember)
            .where(TeamMember.id == member_id, TeamMember.slack_user_id.is_(None))  # type: ignore[arg-type, union-attr]
            .values(slack_user_id=user, updated_at=utcnow())
        )
        await session.commit()


async def open_dm(user: str) -> str:
    opened = await slack.api_call(slack.web_client().conversations_open, users=user)
    return str(opened["channel"]["id"])


async def target_channel(member_id: int | None) -> str | None:
    """Where this member's conversation threads are posted, or None (not in Slack)."""
    settings = get_settings()
    if settings.slack_agent_threads == "channel":
        return settings.slack_inbox_channel or None
    user = await member_slack_id(member_id)
    return await open_dm(user) if user else None


async def current_threads(session: AsyncSession, conversation_id: int) -> list[SlackAgentThread]:
    """The conversation's thread for its assignee (in channel mode the only one)."""
    assignee = (
        select(Conversation.assignee_id)  # type: ignore[call-overload]
        .where(Conversation.id == conversation_id)  # type: ignore[arg-type]
        .scalar_subquery()
    )
    rows = await session.execute(
        select(SlackAgentThread).where(
            SlackAgentThread.conversation_id == conversation_id,  # type: ignore[arg-type]
            SlackAgentThread.member_id == assignee,  # type: ignore[arg-type]
        )
    )
    return list(rows.scalars().all())


async def agent_dm(channel: str) -> bool:
    """Is this DM an agent's (it holds conversation threads)? Asked by ``bots.slack``."""
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
            recent = await session.execute(
                select(Message.id)  # type: ignore[call-overload]
                .where(Message.conversation_id == conversation_id)  # type: ignore[arg-type]
                .order_by(Message.id.desc())  # type: ignore[union-attr]
                .limit(BACKLOG + 1)
            )
            ids = list(recent.scalars().all())
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
async def on_assigned(payload: dict[str, Any]) -> None:
    if not enabled():
        return
    conversation_id, member_id = int(payload["conversation_id"]), payload.get("member_id")
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
    if member_id is not None and payload.get("assignment_id"):
        reason = slack_escape(str(payload.get("reason") or ""))
        await post_once(
            f"assigned:{thread_id}:{payload['assignment_id']}",
            channel,
            f":twisted_rightwards_arrows: Assigned: {reason}",
            thread_ts=ts,
        )
    await sync_thread(thread_id)


# --- mirrored messages ----------------------------------------------------------------


async def _names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(
        select(TeamMember.id, TeamMember.name).where(TeamMember.id.in_(ids))  # type: ignore[call-overload, union-attr]
    )
    return {int(i): str(n) for i, n in rows.all()}


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
    names = await _names(session, {m.author_id for m in messages if m.author_id})
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
            rows = await session.execute(
                select(Message)
                .where(
                    Message.conversation_id == thread.conversation_id,  # type: ignore[arg-type]
                    Message.id > thread.mirrored_to,  # type: ignore[arg-type, operator]
                )
                .order_by(Message.id)  # type: ignore[arg-type]
                .limit(BATCH)
            )
            messages = list(rows.scalars().all())
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
        for message in messages:
            if message.id in lines:  # an agent's Slack reply is in the thread already
                await post_once(
                    f"mirror:{thread_id}:{message.id}",
                    thread.channel,
                    lines[message.id],  # type: ignore[index]
                    thread_ts=thread.ts,
                )
            async with get_db().session() as session:
                await session.execute(
                    update(SlackAgentThread)
                    .where(
                        SlackAgentThread.id == thread_id,  # type: ignore[arg-type]
                        SlackAgentThread.mirrored_to < message.id,  # type: ignore[arg-type, operator]
                    )
                    .values(mirrored_to=message.id)
                )
                await session.commit()
        if len(messages) < BATCH:
            return


@jobs.handler(SYNC)
async def on_message(payload: dict[str, Any]) -> None:
    if not enabled():
        return
    conversation_id = int(payload["conversation_id"])
    async with get_db().read_session() as session:
        threads = await current_threads(session, conversation_id)
    for thread in threads:
        await sync_thread(thread.id)  # type: ignore[arg-type]
    if payload.get("reopened") and threads:
        await refresh_card(conversation_id)  # "resolved" no more: the buttons come back


@jobs.handler(REFRESH_LINE)
async def on_message_changed(payload: dict[str, Any]) -> None:
    """A translation, transcript or edit came after the line was mirrored: update it."""
    if not enabled() or not payload.get("message_id"):
        return
    message_id = int(payload["message_id"])
    async with get_db().read_session() as session:
        message = await session.get(Message, message_id)
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
async def on_status_changed(payload: dict[str, Any]) -> None:
    if enabled():
        await refresh_card(int(payload["conversation_id"]))


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


# --- handoffs and interventions -------------------------------------------------------


async def thread_of(session: AsyncSession, conversation_id: int, member_id: int | None) -> Any:
    rows = await session.execute(
        select(SlackAgentThread).where(
            SlackAgentThread.conversation_id == conversation_id,  # type: ignore[arg-type]
            SlackAgentThread.member_id == member_id,  # type: ignore[arg-type]
        )
    )
    return rows.scalars().first()


def handoff_text(row: Handoff, sender: str) -> str:
    context = row.context or {}
    lines = [f":handshake: *Handoff from {slack_escape(sender)}* — {slack_escape(row.reason)}"]
    if context.get("handoff_note"):
        lines.append(f"*Note:* {slack_escape(context['handoff_note'])}")
    if context.get("summary"):
        lines.append(slack_escape(context["summary"]))
    for said in (context.get("messages") or [])[-3:]:
        lines.append(f"> *{slack_escape(said['author'])}:* {slack_escape(said['text'])}")
    for note in context.get("notes") or []:
        lines.append(f":memo: {slack_escape(note['author'])}: {slack_escape(note['text'])}")
    for i in context.get("interventions") or []:
        lines.append(f":bell: {slack_escape(i['rule'])}: {slack_escape(i['reason'])}")
    return "\n".join(lines)


def handoff_blocks(text: str, handoff_id: int, acknowledged_by: str | None) -> list[Any]:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if acknowledged_by:
        done = f":white_check_mark: Acknowledged by {slack_escape(acknowledged_by)}"
        return [section, {"type": "context", "elements": [{"type": "mrkdwn", "text": done}]}]
    button = {
        "type": "button",
        "action_id": "hg_ack",
        "text": {"type": "plain_text", "text": "Acknowledge"},
        "style": "primary",
        "value": str(handoff_id),
    }
    return [section, {"type": "actions", "elements": [button]}]


@jobs.handler(HANDOFF)
async def on_handoff(payload: dict[str, Any]) -> None:
    """The receiver reads the context package in their thread and acknowledges there."""
    if not enabled() or payload.get("to_member_id") is None:
        return
    conversation_id, receiver = int(payload["conversation_id"]), int(payload["to_member_id"])
    if await target_channel(receiver) is None:
        return  # the receiver does not work from Slack
    async with get_db().read_session() as session:
        thread = await thread_of(session, conversation_id, receiver)
        if thread is None or thread.ts is None:
            raise jobs.RetryLater("the receiver's thread is not posted yet")
        row = await session.get(Handoff, int(payload["handoff_id"]))
        if row is None:
            return
        names = await _names(session, {row.from_member_id} if row.from_member_id else set())
        text = handoff_text(row, names.get(row.from_member_id or 0, "the queue"))
    await post_once(
        f"handoff:{row.id}",
        thread.channel,
        text,
        thread_ts=thread.ts,
        blocks=handoff_blocks(text, row.id, None),  # type: ignore[arg-type]
    )


@jobs.handler(ESCALATED)
async def on_escalated(payload: dict[str, Any]) -> None:
    if not enabled():
        return
    async with get_db().read_session() as session:
        threads = await current_threads(session, int(payload["conversation_id"]))
    reason = slack_escape(str(payload.get("reason") or "not acknowledged"))
    minutes = int(float(payload.get("waited_s") or 0) // 60)
    for thread in threads:
        if thread.ts:
            await post_once(
                f"escalated:{payload['handoff_id']}:{thread.id}",
                thread.channel,
                f":rotating_light: Handoff #{payload['handoff_id']} escalated after "
                f"{minutes} min: {reason}",
                thread_ts=thread.ts,
            )


def intervention_text(payload: dict[str, Any]) -> str:
    title = payload.get("title") or str(payload.get("rule", "")).replace("_", " ")
    lines = [
        f":bell: *Intervention: {slack_escape(title)}* for "
        f"{slack_escape(payload.get('customer_name') or 'the customer')}",
        slack_escape(str(payload.get("reason") or "")),
        f"Suggested: “{slack_escape(str(payload.get('suggested_message') or ''))}”",
    ]
    if payload.get("auto_send"):
        lines.append(f"Goes out automatically after {payload.get('send_after') or 'now'}.")
    return "\n".join(line for line in lines if line)


@jobs.handler(INTERVENTION)
async def on_intervention(payload: dict[str, Any]) -> None:
    """In the thread of each open conversation with the customer, else the owner's DM."""
    if not enabled():
        return
    text, key = intervention_text(payload), f"intervention:{payload['intervention_id']}"
    async with get_db().read_session() as session:
        open_ids = await session.execute(
            select(Conversation.id).where(  # type: ignore[call-overload]
                Conversation.customer_id == int(payload["customer_id"]),  # type: ignore[arg-type]
                Conversation.status != "resolved",  # type: ignore[arg-type]
            )
        )
        threads = [
            t
            for cid in open_ids.scalars().all()
            for t in await current_threads(session, cid)
            if t.ts
        ]
    for thread in threads:
        await post_once(f"{key}:{thread.id}", thread.channel, text, thread_ts=thread.ts)
        await refresh_card(thread.conversation_id)
    user = None if threads else await member_slack_id(payload.get("owner_id"))
    if user is not None:
        await post_once(f"{key}:dm", await open_dm(user), text)
