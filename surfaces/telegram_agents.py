"""Team members in a private chat with the bot: linking, replies and the agent commands.

``channels.telegram`` hands every private-chat update to ``take`` first. A chat linked to a
member is theirs: nothing in it becomes a customer message, and while the member is
deactivated everything they send is refused (with why) and does nothing. An unlinked chat's
``/link CODE`` links it (``telegram_links``: the one-time code from ``POST
/api/v1/team-members/me/telegram-link``, kept hashed, works once, for 15 minutes); an
unlinked chat's exec command is refused and the attempt audited; anything else from an
unlinked chat is a customer's, as before.

What a member's message does runs in one transaction with the row that marks the update
handled (``TelegramAgentUpdate``, unique per chat and message: a replayed update finds it
and does nothing) and the job that answers (``telegram_send.queue_send``), so the webhook
answers 200 only once all of it is committed. The rules are the REST API's: the same
services (``inbox.conversations``, ``routing.assignment.assign_to``,
``handoff.service.handoff_manual`` / ``acknowledge``), and what they refuse is refused here,
with their reason as the answer.

Commands: a reply (Telegram's reply-to on a message the bot sent about a conversation) or
``/reply <id> text`` answers the customer on their own channel; ``/note <id> text`` is a
private note; ``/mine``, ``/claim <id>``, ``/resolve <id>``, ``/handoff <id> [note]``,
``/ack <handoff>``, ``/unlink``, ``/help``. With a reply-to the id may be left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from channels import telegram
from channels.telegram import lean
from crm_core import reads as crm_reads
from handoff.service import HandoffNotFound, acknowledge, handoff_manual
from heliograph import audit, jobs, ratelimit
from heliograph.db import get_db, is_unique_violation, utcnow
from inbox import canned
from inbox import conversations as conv
from routing import reads as routing_reads
from routing.assignment import assign_to, touch
from routing.models import TeamMember
from routing.team import MemberNotFound
from surfaces import telegram_exec
from surfaces.telegram_links import LinkRefused, link_chat
from surfaces.telegram_models import TelegramAgentMessage, TelegramAgentUpdate
from surfaces.telegram_send import TEAM_ROLES, channel_name, queue_send

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^/([A-Za-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.S)
_ID = re.compile(r"^#?(\d{1,12})$")

AGENT_HELP = (
    "Heliograph for agents:\n"
    "↩️ Reply to a customer's message here to answer them on their channel.\n"
    "/mine: your open conversations\n"
    "/reply 42 text · /note 42 text (private, never sent)\n"
    "/claim 42 · /resolve 42 · /handoff 42 [note]\n"
    "/ack 7: acknowledge handoff 7\n"
    "/canned 42 refund: send your canned response /refund\n"
    "In a reply to one of my messages the id can be left out."
)


class Refused(Exception):
    """The command cannot be carried out; the message is the answer."""


def parse_command(text: str) -> tuple[str | None, str]:
    """``/claim@heliograph_bot 42`` -> ("claim", "42"); plain text -> (None, text)."""
    found = _COMMAND.match(text.strip())
    if found is None:
        return None, text.strip()
    return found.group(1).lower(), (found.group(2) or "").strip()


# --- one handled update -------------------------------------------------------------------


@dataclass
class Ask:
    """One message from a member's chat, and what it is about."""

    session: AsyncSession
    member: TeamMember
    msg: lean.Message
    command: str | None
    args: str
    now: datetime
    conversation_id: int | None = None  # where an answer or a reply belongs


DEACTIVATED = (
    "⛔ Not done: your Heliograph access is turned off (your team member account is "
    "deactivated). Ask an admin if that is a mistake."
)


async def member_of_chat(session: AsyncSession, chat_id: str) -> TeamMember | None:
    """The member this chat is linked to, active or not (``take`` refuses an inactive one)."""
    return await routing_reads.member_of_chat(session, chat_id)


async def _first_time(session: AsyncSession, row: TelegramAgentUpdate) -> bool:
    seen = await session.execute(
        select(TelegramAgentUpdate.id).where(  # type: ignore[call-overload]
            TelegramAgentUpdate.chat_id == row.chat_id,
            TelegramAgentUpdate.message_id == row.message_id,
        )
    )
    if seen.first() is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:  # the same update, handled concurrently
        if not is_unique_violation(exc):
            raise
        return False
    return True


async def _audit(session: AsyncSession, row: TelegramAgentUpdate, action: str, why: str) -> None:
    log.warning("telegram chat %s: %s refused (%s)", row.chat_id, row.command, why)
    audit.record(
        session,
        actor=f"telegram:{row.chat_id}",
        action=action,
        subject_type="telegram_update",
        subject_id=row.id,
        details={"chat_id": row.chat_id, "command": row.command, "member_id": row.member_id},
    )


async def take(update_: lean.Update) -> bool:
    """The team's own updates (see the module docstring); False: a customer's message."""
    msg = update_.message or update_.edited_message
    assert msg is not None
    chat_id = str(msg.chat.id)
    command, args = parse_command(msg.text or msg.caption or "")
    async with get_db().session() as session:
        member = await member_of_chat(session, chat_id)
        # The one place a chat's member is checked: a deactivated member's chat stays
        # theirs (nothing in it is a customer's), and all they send is refused, but a
        # /link code may give the chat to someone else (``telegram_links``).
        deactivated = member is not None and not member.active
        if deactivated and command == "link":
            member, deactivated = None, False
        if member is None and command != "link" and command not in telegram_exec.COMMANDS:
            return False
        if update_.message is None:
            return True  # an edit in a team chat changes nothing already done
        row = TelegramAgentUpdate(
            chat_id=chat_id,
            message_id=msg.message_id,
            update_id=update_.update_id,
            member_id=member.id if member else None,
            command=f"/{command}"[:32]
            if command
            else ("reply" if msg.reply_to_message else "text"),
        )
        if not await _first_time(session, row):
            return True  # a replay: done already
        now = utcnow()
        ask = Ask(session, member, msg, command, args, now) if member and not deactivated else None
        answer: str | None
        if deactivated:
            await _audit(session, row, "telegram.deactivated_refused", "member deactivated")
            answer = DEACTIVATED
        elif ask is None:
            answer = await _stranger(session, row, chat_id, command, args, now)
        else:
            answer = await _answer(ask, row)
            # The sign of life after the answer: it updates the member's row, and a reply
            # waiting for a conversation that routing holds must not hold that row (routing
            # locks the members it weighs next: a deadlock, the webhook's 503).
            await touch(session, ask.member.id, now)  # type: ignore[arg-type]
        row.outcome = (answer or "")[:500]
        if answer:
            await queue_send(
                session,
                chat_id,
                answer,
                key=f"answer:{chat_id}:{msg.message_id}",
                kind="answer",
                member_id=row.member_id,
                conversation_id=ask.conversation_id if ask else None,
                reply_to=msg.message_id,
            )
        await session.commit()
    jobs.wake_workers()
    return True


async def _stranger(
    session: AsyncSession,
    row: TelegramAgentUpdate,
    chat_id: str,
    command: str | None,
    args: str,
    now: datetime,
) -> str:
    if command == "link":
        try:  # guessing codes: a few tries per chat, then a lockout
            await ratelimit.hit("telegram_link", chat_id)
        except ratelimit.RateLimited as exc:
            await _audit(session, row, "telegram.link_refused", "too many attempts")
            return f"Too many attempts; try again in {ratelimit.minutes(exc.retry_after)} minutes."
        try:
            member = await link_chat(session, chat_id, args, now)
        except LinkRefused as exc:
            await _audit(session, row, "telegram.link_refused", "invalid code")
            return str(exc)
        row.member_id = member.id
        helps = telegram_exec.HELP if member.role == "exec" else AGENT_HELP
        return f"✅ Linked: this chat is {member.name}'s ({member.role}).\n\n{helps}"
    await _audit(session, row, "telegram.exec_refused", "not a linked exec")
    return "Sorry, that is only for Heliograph's executives."


async def _answer(ask: Ask, row: TelegramAgentUpdate) -> str | None:
    """What the member asked for, carried out (or refused, with why, and nothing kept)."""
    exec_command = ask.command in telegram_exec.COMMANDS
    if ask.command == "unlink":
        return await _unlink(ask)
    if ask.command == "link":
        return f"This chat is linked to {ask.member.name} already; /unlink first to change it."
    if ask.member.role == "exec":
        return await telegram_exec.answer(
            ask.session, ask.member, ask.command, ask.args, ask.msg.text or "", ask.now
        )
    if exec_command:
        await _audit(ask.session, row, "telegram.exec_refused", f"role {ask.member.role}")
        return "Sorry, that is only for Heliograph's executives."
    if ask.member.role not in TEAM_ROLES:
        return f"Your role ({ask.member.role}) cannot work conversations."
    handler = _COMMANDS.get(ask.command or ("reply" if ask.msg.reply_to_message else "help"))
    if handler is None:
        return f"I do not know /{ask.command}.\n\n{AGENT_HELP}"
    try:
        async with ask.session.begin_nested():  # a refusal keeps nothing of the attempt
            return await handler(ask)
    except Refused as exc:
        return f"❌ {exc}"
    except (conv.InvalidRequest, conv.ConversationNotFound, HandoffNotFound, MemberNotFound) as exc:
        return f"❌ {exc}"


# --- the commands -------------------------------------------------------------------------


async def _replied_conversation(ask: Ask) -> int | None:
    replied = ask.msg.reply_to_message
    if replied is None:
        return None
    found = await ask.session.execute(
        select(TelegramAgentMessage.conversation_id).where(  # type: ignore[call-overload]
            TelegramAgentMessage.chat_id == str(ask.msg.chat.id),
            TelegramAgentMessage.telegram_message_id == replied.message_id,
        )
    )
    return found.scalar()


async def _target(ask: Ask, usage: str) -> tuple[int, str]:
    """The conversation a command is about (its first word, else the replied-to message)
    and the rest of the text."""
    first, _, rest = ask.args.partition(" ")
    found = _ID.match(first)
    if found:
        ask.conversation_id = int(found.group(1))
        return ask.conversation_id, rest.strip()
    replied = await _replied_conversation(ask)
    if replied is None:
        raise Refused(f"Which conversation? {usage}, or reply to one of my messages about it.")
    ask.conversation_id = replied
    return replied, ask.args


async def _customer_of(session: AsyncSession, conversation_id: int) -> tuple[str, str]:
    conversation = await conv.get_conversation(session, conversation_id)
    cid = conversation.customer_id
    name = (await crm_reads.customer_names(session, [cid])).get(cid) or crm_reads.label(cid, None)
    return name, channel_name(conversation.channel)


async def _send_reply(ask: Ask, conversation_id: int, text: str) -> None:
    if not text.strip():
        raise Refused("A reply needs some text.")
    message = await conv.reply(ask.session, conversation_id, text, author_id=ask.member.id)
    ask.session.add(  # so a reply to this message finds the conversation, and no echo
        TelegramAgentMessage(
            chat_id=str(ask.msg.chat.id),
            telegram_message_id=ask.msg.message_id,
            member_id=ask.member.id,
            conversation_id=conversation_id,
            message_id=message.id,
            kind="agent",
        )
    )


async def _reply_to(ask: Ask) -> str | None:
    """A Telegram reply to one of the bot's messages: the text goes to the customer."""
    conversation_id = await _replied_conversation(ask)
    if conversation_id is None:
        raise Refused("That message is not about a conversation; use /reply <id> text.")
    ask.conversation_id = conversation_id
    await _send_reply(ask, conversation_id, ask.msg.text or ask.msg.caption or "")
    return None  # the chat shows the reply already; failures show on the conversation


async def _reply(ask: Ask) -> str:
    conversation_id, text = await _target(ask, "/reply 42 text")
    await _send_reply(ask, conversation_id, text)
    name, channel = await _customer_of(ask.session, conversation_id)
    return f"↩️ Sent to {name} on {channel} (#{conversation_id})."


async def _canned(ask: Ask) -> str:
    """``/canned [42] <shortcut>``: the canned response, filled, goes to the customer."""
    conversation_id, rest = await _target(ask, "/canned 42 refund")
    shortcut = canned.command_shortcut(f"/canned {rest}")
    try:
        filled = await canned.command_text(ask.session, ask.member, conversation_id, shortcut or "")
    except canned.CannedNotFound as exc:
        raise Refused(f"Not sent: {exc}.") from exc
    await _send_reply(ask, conversation_id, filled.text)
    name, channel = await _customer_of(ask.session, conversation_id)
    sent = f"↩️ Sent /{shortcut} to {name} on {channel} (#{conversation_id})."
    if filled.unknown:
        left = ", ".join("{{" + key + "}}" for key in filled.unknown)
        sent += f"\n⚠️ Unknown placeholders were sent as written: {left}"
    return sent


async def _note(ask: Ask) -> str:
    conversation_id, text = await _target(ask, "/note 42 text")
    if not text.strip():
        raise Refused("A note needs some text: /note 42 text")
    await conv.add_note(ask.session, conversation_id, text, author_id=ask.member.id)
    return f"📝 Note kept on #{conversation_id}; the customer does not see it."


async def _claim(ask: Ask) -> str:
    conversation_id, _ = await _target(ask, "/claim 42")
    done = await assign_to(ask.session, conversation_id, ask.member.id, ask.member, now=ask.now)  # type: ignore[arg-type]
    name, channel = await _customer_of(ask.session, conversation_id)
    if done is None:
        return f"#{conversation_id} ({name}, {channel}) is yours already."
    return f"✋ #{conversation_id} ({name}, {channel}) is yours."


async def _resolve(ask: Ask) -> str:
    conversation_id, _ = await _target(ask, "/resolve 42")
    await conv.set_status(ask.session, conversation_id, "resolved")
    return f"✅ #{conversation_id} resolved."


async def _handoff(ask: Ask) -> str:
    conversation_id, note = await _target(ask, "/handoff 42 [note]")
    row = await handoff_manual(
        ask.session, conversation_id, ask.member, note=note or None, now=ask.now
    )
    receiver = await routing_reads.member(ask.session, row.to_member_id)
    to = receiver.name if receiver else "the queue"
    return f"🤝 #{conversation_id} handed to {to}: {row.reason}"


async def _ack(ask: Ask) -> str:
    found = _ID.match(ask.args.split(" ", 1)[0]) if ask.args else None
    if found is None:
        raise Refused("Which handoff? /ack 7")
    row = await acknowledge(ask.session, int(found.group(1)), ask.member, now=ask.now)
    ask.conversation_id = row.conversation_id
    return f"👍 Handoff #{row.id} acknowledged: #{row.conversation_id} is yours."


async def _mine(ask: Ask) -> str:
    found: list[conv.Conversation] = []
    for status in ("open", "pending", "snoozed"):
        f = conv.ConversationFilter(status=status, assignee_id=ask.member.id, limit=50)
        found += await conv.list_conversations(ask.session, f)
    if not found:
        return "You have no open conversations."
    found.sort(key=lambda c: c.last_message_at, reverse=True)
    lines = [f"Your open conversations ({len(found)}):"]
    for c in found[:12]:
        name, channel = await _customer_of(ask.session, c.id)  # type: ignore[arg-type]
        waiting = ""
        if c.waiting_since is not None:
            since = c.waiting_since.replace(tzinfo=c.waiting_since.tzinfo or ask.now.tzinfo)
            waiting = f" · waiting {int((ask.now - since).total_seconds() // 60)} min"
        lines.append(f"#{c.id} {name} · {channel} · {c.status}{waiting}")
    if len(found) > 12:
        lines.append(f"… and {len(found) - 12} more")
    return "\n".join(lines)


async def _unlink(ask: Ask) -> str:
    ask.member.telegram_chat_id, ask.member.updated_at = None, ask.now
    return "This chat is no longer linked; nothing more will arrive here."


async def _help(_: Ask) -> str:
    return AGENT_HELP


_COMMANDS: dict[str, Callable[[Ask], Awaitable[str | None]]] = {
    "reply": lambda ask: _reply(ask) if ask.command else _reply_to(ask),
    "note": _note,
    "canned": _canned,
    "claim": _claim,
    "resolve": _resolve,
    "handoff": _handoff,
    "ack": _ack,
    "mine": _mine,
    "unlink": _unlink,
    "help": _help,
    "start": _help,
}

telegram.diverters.append(take)
