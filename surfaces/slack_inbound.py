"""What agents do in their Slack threads: answer the customer, write a note, press a button.

A message in a conversation's thread (in the inbox channel, or under a parent in the
agent's DM) is the agent's: a reply goes to the customer on their own channel through
``inbox.conversations.reply`` (so the outbox delivers it, translated where needed); one
starting with ``note:`` is a private note. Both are stored, with Slack's ``channel:ts`` as
the key (``SlackAgentEvent``), before Slack gets its 200 (bolt runs with
``process_before_response``), so Slack's retry of the same event does nothing. Edits and
deletes in Slack, bot messages, and messages from people who are not team members are
acknowledged, logged and not acted on.

The Slack user is matched to a team member by ``TeamMember.slack_user_id``, else on first
use by the email ``users.info`` gives (which is then kept as their Slack id). A deactivated
member's messages and presses do nothing; they are told so, to them alone.

Buttons (block_actions): Claim, Resolve, Snooze (1/4/24 h), Hand off (to the best eligible
member now, else the next on shift) and Acknowledge (a handoff notice). Their effects
publish the usual events, so the card is refreshed by ``surfaces.slack_threads``; a
refusal (a conversation someone else holds) is told to the presser alone (ephemeral).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from channels import slack
from channels.slack.settings import SlackSettings
from handoff import reads as handoff_reads
from handoff.service import acknowledge, handoff_manual
from heliograph import jobs
from heliograph.db import get_db, utcnow
from inbox import canned
from inbox.conversations import InvalidRequest, add_note, reply, set_status
from routing import reads as routing_reads
from routing.assignment import assign_to, touch
from routing.models import TeamMember
from surfaces.models import SlackAgentEvent, SlackAgentPost, SlackAgentThread
from surfaces.slack_alerts import handoff_blocks, handoff_text
from surfaces.slack_posts import store_slack_id, update_message
from surfaces.slack_threads import agent_dm, enabled

log = logging.getLogger(__name__)

NOTE_PREFIX = "note:"


class Say(jobs.Payload):
    """A word to one member, shown to them alone (``chat.postEphemeral``)."""

    channel: str
    thread_ts: str | None
    user: str
    text: str


class Acknowledged(jobs.Payload):
    """A handoff notice to show as acknowledged, and by whom."""

    handoff_id: int
    by: str


SAY = jobs.JobKind("slack_agents.say", Say, jobs.URGENT)
ACKNOWLEDGED = jobs.JobKind("slack_agents.acknowledged", Acknowledged)


# --- who is writing -------------------------------------------------------------------

DEACTIVATED = (
    "Not done: your Heliograph access is turned off (your team member account is "
    "deactivated). Ask an admin if that is a mistake."
)


class MemberDeactivated(Exception):
    """The Slack user is a team member whose access was taken away: refuse, and say so."""

    def __init__(self, member: TeamMember) -> None:
        super().__init__(f"team member {member.id} is deactivated")
        self.member = member


async def member_for(user: str) -> TeamMember | None:
    """The active team member behind a Slack user, or None (not on the team). The one
    place Slack finds its member: a deactivated one raises ``MemberDeactivated``."""
    async with get_db().read_session() as session:
        member = await routing_reads.member_by_slack_id(session, user)
    if member is not None:
        if not member.active:
            raise MemberDeactivated(member)
        return member
    info = await slack.api_call(slack.web_client().users_info, user=user)
    email = str(((info.get("user") or {}).get("profile") or {}).get("email") or "").lower()
    if not email:
        return None
    async with get_db().read_session() as session:
        member = await routing_reads.member_by_email_any_case(session, email)
    if member is None or member.slack_user_id not in (None, user):
        return None
    if not member.active:
        raise MemberDeactivated(member)
    await store_slack_id(member.id, user)  # type: ignore[arg-type]
    log.info("Slack user %s is team member %s (matched by email)", user, member.id)
    return member


async def acting_member(
    user: str, channel: str, thread_ts: str | None, key: str
) -> TeamMember | None:
    """The member behind a message or a button press; a deactivated one is told (to
    them alone) that nothing was done, and None comes back."""
    try:
        member = await member_for(user)
    except MemberDeactivated as exc:
        who = exc.member.id
        log.warning("Slack user %s is team member %s, deactivated: %s refused", user, who, key)
        await say_to(user, channel, thread_ts, DEACTIVATED, key)
        return None
    if member is None:
        log.warning("Slack user %s is not a team member: %s ignored", user, key)
    return member


async def is_agent_side(channel: str) -> bool:
    inbox = SlackSettings.get().slack_inbox_channel
    return bool(channel) and (channel == inbox or await agent_dm(channel))


# --- messages in a thread -------------------------------------------------------------


async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
    """Every message event comes here; only the agent side's are acted on (customers'
    were stored by the webhook route before bolt saw them)."""
    channel = str(event.get("channel") or "")
    if not enabled() or not await is_agent_side(channel):
        return
    subtype = event.get("subtype")
    if subtype in ("message_changed", "message_deleted"):
        log.info("Slack %s in %s: edits and deletes in Slack are not resent", subtype, channel)
        return
    if subtype not in slack.CUSTOMER_SUBTYPES or slack.from_a_bot(body, event):
        return
    ts, thread_ts, user = event.get("ts"), event.get("thread_ts"), event.get("user")
    if not ts or not user or not thread_ts or thread_ts == ts:
        log.info("Slack message %s:%s is not in a conversation thread; ignored", channel, ts)
        return
    async with get_db().read_session() as session:
        found = await session.execute(
            select(SlackAgentThread).where(
                SlackAgentThread.channel == channel,  # type: ignore[arg-type]
                SlackAgentThread.ts == thread_ts,  # type: ignore[arg-type]
            )
        )
        thread = found.scalars().first()
    if thread is None:
        log.info("Slack thread %s:%s is no conversation's; ignored", channel, thread_ts)
        return
    member = await acting_member(str(user), channel, thread_ts, f"{channel}:{ts}")
    if member is None:
        return
    text = slack.unescape(str(event.get("text") or ""))
    await act(thread, member, f"{channel}:{ts}", text)


async def act(thread: SlackAgentThread, member: TeamMember, key: str, text: str) -> None:
    """The agent's reply or note, stored with the event's key in one transaction."""
    cid = thread.conversation_id
    is_note = text.lstrip().lower().startswith(NOTE_PREFIX)
    shortcut = canned.command_shortcut(text)  # "/canned refund": the canned text goes
    unknown: list[str] = []
    try:
        async with get_db().session(priority=True) as session:
            if await session.get(SlackAgentEvent, key) is not None:
                return  # Slack's retry of an event we acted on
            row = SlackAgentEvent(key=key, conversation_id=cid, member_id=member.id, kind="reply")  # type: ignore[arg-type]
            if is_note:
                words = text.lstrip()[len(NOTE_PREFIX) :].strip()
                row.kind, row.note_id = "note", (await add_note(session, cid, words, member.id)).id
            else:
                if shortcut is not None:
                    filled = await canned.command_text(session, member, cid, shortcut)
                    text, unknown = filled.text, filled.unknown
                row.message_id = (await reply(session, cid, text, member.id)).id
            session.add(row)
            await touch(session, member.id)  # type: ignore[arg-type]
            await session.commit()
    except IntegrityError:
        return  # the same event, acted on by a parallel delivery
    except (InvalidRequest, canned.CannedNotFound) as exc:
        await tell(member, thread.channel, thread.ts, f"Not sent: {exc}", key)
        return
    if unknown:
        left = ", ".join("{{" + name + "}}" for name in unknown)
        await tell(
            member, thread.channel, thread.ts, f"Sent; unknown placeholders as written: {left}", key
        )
    jobs.wake_workers()


async def tell(
    member: TeamMember, channel: str, thread_ts: str | None, text: str, key: str
) -> None:
    """A word to one member only (ephemeral), through the jobs like every Slack call."""
    if member.slack_user_id:
        await say_to(member.slack_user_id, channel, thread_ts, text, key)


async def say_to(user: str, channel: str, thread_ts: str | None, text: str, key: str) -> None:
    async with get_db().session() as session:
        await jobs.enqueue(
            session,
            SAY,
            Say(channel=channel, thread_ts=thread_ts, user=user, text=text),
            dedupe_key=f"slack-tell:{key}",
        )
        await session.commit()
    jobs.wake_workers()


@jobs.handler(SAY)
async def say(payload: Say) -> None:
    args = {k: v for k, v in payload.model_dump().items() if v}  # no thread_ts: the channel
    # An ephemeral message has no ts to look up; a lost answer may show it twice.
    await slack.api_call(slack.web_client().chat_postEphemeral, **args)


# --- buttons --------------------------------------------------------------------------


async def _pressed(body: dict[str, Any]) -> tuple[TeamMember | None, str, str | None, str]:
    user = str((body.get("user") or {}).get("id") or "")
    container = body.get("container") or {}
    channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
    message = body.get("message") or {}
    thread_ts = message.get("thread_ts") or container.get("message_ts")
    action = (body.get("actions") or [{}])[0]
    key = f"{channel}:{action.get('action_ts') or container.get('message_ts')}"
    member = await acting_member(user, channel, thread_ts, key) if user else None
    return member, channel, thread_ts, key


def _value(body: dict[str, Any]) -> str:
    action = (body.get("actions") or [{}])[0]
    return str(action.get("value") or (action.get("selected_option") or {}).get("value") or "")


async def _do(body: dict[str, Any], work: Any) -> None:
    """Run ``work(session, member)`` for the member who pressed; a refusal is told."""
    member, channel, thread_ts, key = await _pressed(body)
    if member is None:
        return
    try:
        async with get_db().session(priority=True) as session:
            said = await work(session, member)
            await touch(session, member.id)  # type: ignore[arg-type]
            await session.commit()
    except (InvalidRequest, LookupError, ValueError) as exc:
        said = f"Could not do that: {exc}"
    if said:
        await tell(member, channel, thread_ts, said, key)
    jobs.wake_workers()


def setup(app: AsyncApp) -> None:
    app.event("message")(on_message)

    @app.action("hg_claim")
    async def claim(ack: Any, body: dict[str, Any]) -> None:
        await ack()

        async def work(session: AsyncSession, member: TeamMember) -> str | None:
            done = await assign_to(session, int(_value(body)), member.id, member)  # type: ignore[arg-type]
            return None if done is not None else "It is yours already."

        await _do(body, work)

    @app.action("hg_resolve")
    async def resolve(ack: Any, body: dict[str, Any]) -> None:
        await ack()

        async def work(session: AsyncSession, member: TeamMember) -> None:
            await set_status(session, int(_value(body)), "resolved")

        await _do(body, work)

    @app.action("hg_snooze")
    async def snooze(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        conversation, _, hours = _value(body).partition(":")
        until = utcnow() + timedelta(hours=float(hours or 1))

        async def work(session: AsyncSession, member: TeamMember) -> None:
            await set_status(session, int(conversation), "snoozed", snoozed_until=until)

        await _do(body, work)

    @app.action("hg_handoff")
    async def hand_off(ack: Any, body: dict[str, Any]) -> None:
        await ack()

        async def work(session: AsyncSession, member: TeamMember) -> str | None:
            row = await handoff_manual(session, int(_value(body)), member)
            return None if row.to_member_id else "Nobody is eligible now: back to the queue."

        await _do(body, work)

    @app.action("hg_ack")
    async def ack_handoff(ack: Any, body: dict[str, Any]) -> None:
        await ack()

        async def work(session: AsyncSession, member: TeamMember) -> None:
            row = await acknowledge(session, int(_value(body)), member)
            await jobs.enqueue(
                session,
                ACKNOWLEDGED,
                Acknowledged(handoff_id=row.id, by=member.name),  # type: ignore[arg-type]
                dedupe_key=f"slack-ack:{row.id}",
            )

        await _do(body, work)


@jobs.handler(ACKNOWLEDGED)
async def acknowledged(payload: Acknowledged) -> None:
    """The notice shows who acknowledged, in place of its button."""
    handoff_id = payload.handoff_id
    async with get_db().read_session() as session:
        post = await session.get(SlackAgentPost, f"handoff:{handoff_id}")
        row = await handoff_reads.handoff(session, handoff_id)
        sender = await routing_reads.member(session, row.from_member_id) if row else None
    if post is None or row is None:
        return
    if not post.ts:
        raise jobs.RetryLater("the notice is being posted; update it afterwards")
    text = handoff_text(row, sender.name if sender else "the queue")
    await update_message(post.channel, post.ts, text, handoff_blocks(text, handoff_id, payload.by))


slack.listener_setups.append(setup)
