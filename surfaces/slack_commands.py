"""``/hg``: the team leads' Slack slash command (queue, who, assign, handoff, customer,
sla, stats, help).

Requests reach here verified (``channels/slack/routes.py``: 403 on a bad signature) and bolt
runs with ``process_before_response=True``, so Slack gets its HTTP answer when this
listener returns. Slack wants it within 3 seconds
(https://docs.slack.dev/interactivity/implementing-slash-commands/#responding_basic_receipt):
the work starts at once and, if it is done within ``ACK_BUDGET_S``, the answer *is* the
acknowledgement; otherwise the acknowledgement says "working on it" and the answer follows
as an ephemeral message POSTed to the command's ``response_url`` (replacing the
placeholder), with a bounded retry. Changes (``assign``, ``handoff``) go through the
routing and handoff services and are committed before any answer is sent, so a retried
POST repeats the answer, never the change. Slack does not retry slash commands.

Answers are ephemeral Block Kit, short enough for a phone: a header, at most
``MAX_LINES`` lines, and a context line with the asker's local time. The Slack user is the
team member with that ``slack_user_id``, else (first use) the one whose email Slack's
``users.info`` gives (``surfaces.slack_inbound.member_for``); anyone else is refused
and logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from slack_bolt.async_app import AsyncApp
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import shutdown_hooks
from channels.slack import escape, listener_setups
from crm_core.profile import zone
from handoff.service import handoff_manual
from heliograph.db import get_db, utcnow
from inbox.assignment import open_conversations_of
from inbox.conversations import ConversationNotFound, InvalidRequest
from inbox.outbox import DeliveryRefused, DeliveryRetry
from reporting import insights
from routing import reads as routing_reads
from routing.assignment import assign_to
from routing.models import TeamMember
from routing.policy import city_of
from routing.team import MemberNotFound, list_members
from surfaces.cards import CHANNEL_NAMES
from surfaces.slack_inbound import DEACTIVATED, MemberDeactivated, member_for

log = logging.getLogger(__name__)

COMMAND = "/hg"
ACK_BUDGET_S = 1.5  # answer in the acknowledgement when the work is done by then
MAX_LINES = 10
POST_TRIES = 3  # response_url: Slack accepts up to five posts within 30 minutes
SHUTDOWN_WAIT_S = 10  # how long a stopping process waits for answers still on their way
CHANGES = ("assign", "handoff")
LEADS = ("lead", "admin")
HELP = (
    ("queue", "waiting conversations and the oldest wait"),
    ("who", "who is on shift now, local times and load"),
    ("assign <conversation> @member", "give a conversation to someone (leads)"),
    ("handoff @from [@to]", "hand someone's open conversations over (leads)"),
    ("customer <email|phone|name>", "a customer's profile and open conversations"),
    ("sla", "conversations past their first-response target"),
    ("stats [today|week]", "volume and medians per channel"),
)
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_CONVERSATION = re.compile(r"^#?(\d{1,12})$")
_pending: set[asyncio.Task[Any]] = set()


class CommandError(ValueError):
    """The command cannot be done as typed; the message says what to type instead."""


@dataclass
class Answer:
    title: str
    lines: list[str] = field(default_factory=list)
    context: str = ""

    def payload(self, *, replace: bool = False) -> dict[str, Any]:
        shown = self.lines[:MAX_LINES]
        if len(self.lines) > MAX_LINES:
            shown[-1] = f"_…and {len(self.lines) - MAX_LINES + 1} more_"
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}}
        ]
        if shown:
            text = "\n".join(shown)[:3000]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        if self.context:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": self.context}]}
            )
        body: dict[str, Any] = {
            "response_type": "ephemeral",
            "text": "\n".join([escape(self.title), *shown]),  # notification and fallback
            "blocks": blocks,
        }
        if replace:
            body["replace_original"] = True
        return body


# --- parsing (no database: a typo is answered at once) ------------------------------------


@dataclass(frozen=True)
class Request:
    sub: str
    args: list[str]
    user_id: str
    response_url: str


def parse(command: dict[str, Any]) -> Request:
    words = str(command.get("text") or "").split()
    sub = words[0].lower() if words else "help"
    args = words[1:]
    if sub not in HANDLERS and sub != "help":
        raise CommandError(f"I don't know `{COMMAND} {sub}`.")
    if sub in ("queue", "who", "sla") and args:
        raise CommandError(f"`{COMMAND} {sub}` takes nothing after it.")
    if sub == "assign" and (len(args) != 2 or not _CONVERSATION.match(args[0])):
        raise CommandError(f"Type `{COMMAND} assign <conversation number> @member`.")
    if sub == "handoff" and len(args) not in (1, 2):
        raise CommandError(f"Type `{COMMAND} handoff @from` or `{COMMAND} handoff @from @to`.")
    if sub == "customer" and not args:
        raise CommandError(f"Type `{COMMAND} customer` and an email, a phone or a name.")
    if sub == "stats" and (len(args) > 1 or (args and args[0].lower() not in ("today", "week"))):
        raise CommandError(f"Type `{COMMAND} stats`, `{COMMAND} stats today` or `… week`.")
    return Request(
        sub, args, str(command.get("user_id") or ""), str(command.get("response_url") or "")
    )


def help_answer(problem: str | None = None) -> Answer:
    lines = [f"`{COMMAND} {usage}` {what}" for usage, what in HELP]
    return Answer(problem or f"{COMMAND}: the team lead's commands", lines, "Answers only you see.")


# --- the subcommands ------------------------------------------------------------------------


def span(delta: timedelta | None) -> str:
    """``45m``, ``1h 05m``, ``2d 3h``; ``-`` for nothing."""
    if delta is None:
        return "-"
    minutes = max(int(delta.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


async def queue(session: AsyncSession, asker: TeamMember, args: list[str], now: datetime) -> Answer:
    q = await insights.queue_summary(session, now, limit=MAX_LINES)
    if not q.total:
        return Answer("Queue: nobody waiting", ["Every open conversation has someone."])
    lines = [
        f"#{w.conversation_id} *{escape(w.customer)}* · {_channel(w.channel)} · {w.priority} · "
        f"{span(w.waited)}"
        for w in q.waiting
    ]
    return Answer(f"Queue: {q.total} waiting, oldest {span(q.oldest_wait)}", lines)


async def who(session: AsyncSession, asker: TeamMember, args: list[str], now: datetime) -> Answer:
    members = await insights.on_shift(session, now)
    if not members:
        return Answer("Nobody is on shift now")
    lines = [
        f"*{escape(m.name)}* · {escape(m.region)} · {m.local_time:%H:%M} {city_of(m.timezone)} · "
        f"{m.load}/{m.capacity} · {m.availability}"
        for m in members
    ]
    return Answer(f"On shift now: {len(members)}", lines)


async def sla(session: AsyncSession, asker: TeamMember, args: list[str], now: datetime) -> Answer:
    breaches = await insights.sla_breaches(session, now)
    if not breaches:
        return Answer("SLA: nothing past its target", ["Every open conversation is in time."])
    lines = [
        f"#{b.conversation_id} *{escape(b.customer)}* · {b.priority} · {span(b.waited)} "
        f"(target {span(b.target)}) · {escape(b.assignee or 'queue')}"
        for b in breaches
    ]
    return Answer(f"SLA: {len(breaches)} past the first-response target", lines)


async def stats(session: AsyncSession, asker: TeamMember, args: list[str], now: datetime) -> Answer:
    week = bool(args) and args[0].lower() == "week"
    since, _ = insights.local_day(now, asker.timezone)
    if week:
        since -= timedelta(days=6)
    volume = await insights.volume_stats(session, since, now)
    lines = [
        f"*{_channel(line.key)}* · {line.inbound} in · {line.opened} new · "
        f"1st reply {span(line.first_response_median)} · "
        f"resolved {line.resolved} in {span(line.resolution_median)}"
        for line in volume.by_channel
    ] or ["No conversations yet."]
    title = "last 7 days" if week else "today"
    return Answer(f"Stats {title}: {volume.total_inbound} in, {volume.total_opened} new", lines)


async def customer(
    session: AsyncSession, asker: TeamMember, args: list[str], now: datetime
) -> Answer:
    query = " ".join(args)
    found = await insights.customer_summary(session, query, limit=3)
    if not found:
        return Answer(f"No customer matches “{query}”")
    lines: list[str] = []
    for c in found:
        contact = escape(", ".join(c.emails[:1] + c.phones[:1]) or "no email or phone")
        lines.append(
            f"*{escape(c.name)}* · {contact} · {c.journey_stage} · LTV {c.lifetime_value}"
            + (" · VIP" if c.vip else "")
        )
        for open_ in c.open_conversations[:2]:
            lines.append(
                f"   #{open_.conversation_id} {_channel(open_.channel)} · {open_.status} · "
                f"{escape(open_.assignee or 'queue')}"
            )
        last = span(now - c.last_contact) + " ago" if c.last_contact else "never"
        lines.append(f"   last contact {last} · {len(c.open_interventions)} open interventions")
    return Answer(f"Customer: {found[0].name}" if len(found) == 1 else "Customers", lines)


async def assign(
    session: AsyncSession, asker: TeamMember, args: list[str], now: datetime
) -> Answer:
    conversation_id = int(_CONVERSATION.match(args[0])[1])  # type: ignore[index]
    member = await find_member(session, args[1])
    done = await assign_to(session, conversation_id, member.id, asker, now=now)  # type: ignore[arg-type]
    if done is None:
        return Answer(f"#{conversation_id} is {member.name}'s already", ["Nothing changed."])
    return Answer(f"#{conversation_id} assigned to {member.name}", [escape(done.reason)])


async def handoff(
    session: AsyncSession, asker: TeamMember, args: list[str], now: datetime
) -> Answer:
    giver = await find_member(session, args[0])
    receiver = await find_member(session, args[1]) if len(args) > 1 else None
    if receiver is not None and receiver.id == giver.id:
        raise CommandError("Hand over to someone else than the one handing over.")
    conversations = await open_conversations_of(session, giver.id)  # type: ignore[arg-type]
    if not conversations:
        return Answer(f"{giver.name} has no open conversations", ["Nothing to hand over."])
    lines = []
    for conversation in conversations:
        row = await handoff_manual(
            session,
            conversation.id,  # type: ignore[arg-type]
            asker,
            to_member_id=receiver.id if receiver else None,
            now=now,
        )
        lines.append(f"#{row.conversation_id} → {escape(await _name(session, row.to_member_id))}")
    return Answer(f"Handed over {len(lines)} of {giver.name}'s conversations", lines)


def _channel(name: str) -> str:
    return CHANNEL_NAMES.get(name, name)


async def _name(session: AsyncSession, member_id: int | None) -> str:
    member = await routing_reads.member(session, member_id)
    return member.name if member is not None else "the queue"


Handler = Callable[[AsyncSession, TeamMember, list[str], datetime], Awaitable[Answer]]
HANDLERS: dict[str, Handler] = {
    "queue": queue,
    "who": who,
    "assign": assign,
    "handoff": handoff,
    "customer": customer,
    "sla": sla,
    "stats": stats,
}


async def find_member(session: AsyncSession, ref: str) -> TeamMember:
    """``<@U123|name>`` (Slack's escaped mention), ``@email`` / ``email``, or ``@name``
    (full name, first name or the email's local part, case-insensitive)."""
    mention = _MENTION.match(ref)
    if mention:
        found = await member_by_slack_id(session, mention[1])
        if found is None:
            raise CommandError(f"<@{mention[1]}> is not on the team in Heliograph.")
        return found
    name = ref.removeprefix("@").strip().lower()
    members = [m for m in await list_members(session) if m.active]
    matches = [m for m in members if m.email.lower() == name]
    matches = matches or [
        m
        for m in members
        if name
        in (
            m.name.lower(),
            m.name.lower().replace(" ", "."),
            m.name.split()[0].lower(),
            m.email.split("@")[0].lower(),
        )
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CommandError(f"Nobody active on the team is called {ref}.")
    names = ", ".join(m.name for m in matches[:5])
    raise CommandError(f"{ref} could be {names}; mention them with @ or use their email.")


async def member_by_slack_id(session: AsyncSession, slack_user_id: str) -> TeamMember | None:
    return await routing_reads.member_by_slack_id(session, slack_user_id)


# --- running one command ----------------------------------------------------------------------


def _context(asker: TeamMember, now: datetime) -> str:
    local = now.astimezone(zone(asker.timezone))
    return f"{asker.name} · your time {local:%a %H:%M} ({city_of(zone(asker.timezone).key)})"


async def answer(request: Request, now: datetime | None = None) -> Answer:
    """Who asks, may they, and the answer; a change is committed before this returns."""
    now = now or utcnow()
    found = await _asker(request.user_id)
    changes = request.sub in CHANGES
    # Reads need no write transaction (on SQLite that would queue behind every writer); a
    # change has a person waiting for it, so it goes ahead of background writers.
    db = get_db()
    async with db.session(priority=True) if changes else db.read_session() as session:
        asker = await routing_reads.member(session, found.id if found is not None else None)
        if asker is None or not asker.active:
            log.warning(
                "refused %s %s from Slack user %s: not an active team member",
                COMMAND,
                request.sub,
                request.user_id,
            )
            return _refusal(asker)
        context = _context(asker, now)
        if changes and asker.role not in LEADS:
            return Answer(
                f"Sorry, {COMMAND} {request.sub} is for team leads",
                [f"Ask a lead to do it; `{COMMAND} queue`, `who`, `sla` and `stats` are yours."],
                context,
            )
        try:
            result = await HANDLERS[request.sub](session, asker, request.args, now)
            if changes:
                await session.commit()
        except (CommandError, InvalidRequest, ConversationNotFound, MemberNotFound) as exc:
            await session.rollback()
            return Answer(f"Could not do {COMMAND} {request.sub}", [escape(str(exc))], context)
    result.context = context
    return result


async def _asker(user: str) -> TeamMember | None:
    """The member behind the Slack user (by Slack id, else by email on first use): an
    inactive one comes back as they are, for ``answer`` to refuse."""
    try:
        return await member_for(user)
    except MemberDeactivated as exc:
        return exc.member
    except (DeliveryRetry, DeliveryRefused) as exc:  # users.info failed: cannot tell
        log.warning("could not ask Slack who %s is (%s)", user, exc)
        return None


def _refusal(asker: TeamMember | None) -> Answer:
    if asker is not None:  # on the team, deactivated
        return Answer("Sorry, your Heliograph access is turned off", [DEACTIVATED])
    return Answer(
        "Sorry, this is for the Heliograph team",
        ["Your Slack account is not linked to a team member; ask an admin to add you."],
    )


async def respond(response_url: str, body: dict[str, Any]) -> bool:
    """POST an answer to Slack's ``response_url``, a few tries with backoff."""
    delay = 0.5
    async with httpx.AsyncClient(timeout=10) as http:
        for attempt in range(1, POST_TRIES + 1):
            try:
                response = await http.post(response_url, json=body)
                if response.status_code < 300:
                    return True
                if response.status_code != 429 and response.status_code < 500:
                    log.warning("Slack refused the /hg answer: %s", response.text[:200])
                    return False
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if attempt < POST_TRIES:
                log.info("posting the /hg answer failed (%s); trying again", problem)
                await asyncio.sleep(delay)
                delay *= 2
    log.warning("the /hg answer could not be posted to Slack after %d tries", POST_TRIES)
    return False


async def _safe_answer(request: Request) -> Answer:
    try:
        return await answer(request)
    except Exception:
        log.exception("%s %s failed", COMMAND, request.sub)
        return Answer(
            f"{COMMAND} {request.sub} failed", ["Something broke on our side; it is logged."]
        )


async def _follow_up(work: asyncio.Task[Answer], response_url: str) -> None:
    result = await work
    if response_url:
        await respond(response_url, result.payload(replace=True))


def _keep(task: asyncio.Task[Any]) -> None:
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def settle() -> None:
    """Wait for answers still on their way (tests, and a clean shutdown)."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)


async def _settle_on_shutdown() -> None:
    # An answer in flight at shutdown still reaches the lead; each has bounded retries, so
    # this ends, and the cap keeps a hung response_url from holding the process.
    try:
        await asyncio.wait_for(settle(), SHUTDOWN_WAIT_S)
    except TimeoutError:
        log.warning("shutdown: %d /hg answer(s) still unsent", len(_pending))


async def on_command(ack: Any, command: dict[str, Any]) -> None:
    try:
        request = parse(command)
    except CommandError as exc:
        await ack(**help_answer(str(exc)).payload())
        return
    if request.sub == "help":
        await ack(**help_answer().payload())
        return
    work = asyncio.create_task(_safe_answer(request))
    _keep(work)
    done, _ = await asyncio.wait({work}, timeout=ACK_BUDGET_S)
    if done:
        await ack(**work.result().payload())
        return
    await ack(
        **Answer(f"Working on {COMMAND} {request.sub}…", ["The answer follows here."]).payload()
    )
    _keep(asyncio.create_task(_follow_up(work, request.response_url)))


def setup(app: AsyncApp) -> None:
    app.command(COMMAND)(on_command)


listener_setups.append(setup)
shutdown_hooks.append(_settle_on_shutdown)
