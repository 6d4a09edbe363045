"""The CEO's Telegram bot: ``/pulse``, ``/customer <query>``, ``/atrisk``, ``/handoffs``,
``/today``, and the plain questions that mean them ("how is the team doing", "who is at
risk", "tell me about Ana").

Only members with the ``exec`` role, by their linked chat, get answers (the refusal for
everyone else, audited, is ``telegram_agents``'). The numbers come from
``reporting.insights``; this module only words them: at most ~15 lines, one phone
screen, every time in the asker's own zone.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from reporting import insights
from routing.models import TeamMember
from surfaces.telegram_send import channel_name, local

COMMANDS = frozenset({"pulse", "customer", "atrisk", "handoffs", "today"})
MAX_LINES = 15

HELP = (
    "Ask me:\n"
    "/pulse: the team on shift, the queue, first responses, SLA breaches\n"
    "/customer Ana Silva: a customer's profile, journey and conversations\n"
    "/atrisk: customers the intervention rules flagged, most valuable first\n"
    "/handoffs: today's handoffs and how long each took to acknowledge\n"
    "/today: today's volume by channel and region\n"
    'Or in words: "how is the team doing", "who is at risk", "tell me about Ana".'
)

# Plain questions -> commands, first match wins ("who is at risk" before "who is <name>").
_QUESTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(at[- ]risk|churn|risky|in danger)\b"), "atrisk"),
    (re.compile(r"\bhand-?offs?\b|\bhanded (over|off)\b"), "handoffs"),
    (
        re.compile(r"^(?:tell me about|what about|look up|find|who is|who's)\s+(?P<q>.+)$"),
        "customer",
    ),
    (re.compile(r"\b(numbers|volume|stats|statistics|how many|today)\b"), "today"),
    (re.compile(r"\b(team|pulse|on shift|queue|how are we|how is it going|status)\b"), "pulse"),
]


def understand(text: str) -> tuple[str, str] | None:
    """A plain question as ``(command, argument)``; None when no rule matches."""
    said = " ".join(text.lower().split()).strip(" ?!.")
    for pattern, command in _QUESTIONS:
        found = pattern.search(said)
        if found:
            query = found.groupdict().get("q") or ""
            return command, query.strip(" ?!.\"'“”")
    return None


def span(value: timedelta | None) -> str:
    if value is None:
        return "n/a"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} days"


def _fit(lines: list[str]) -> str:
    if len(lines) > MAX_LINES:
        lines = [*lines[: MAX_LINES - 1], f"… {len(lines) - MAX_LINES + 1} more lines"]
    return "\n".join(lines)


async def answer(
    session: AsyncSession,
    member: TeamMember,
    command: str | None,
    args: str,
    text: str,
    now: datetime,
) -> str:
    """The answer to an exec's command or plain question."""
    if command is None:
        understood = understand(text)
        if understood is None:
            return f"I did not get that.\n{HELP}"
        command, args = understood
    handler = _ANSWERS.get(command)
    if handler is None:
        return HELP if command in ("help", "start") else f"/{command} is for agents.\n{HELP}"
    return _fit(await handler(session, member, args, now))


Answer = Callable[[AsyncSession, TeamMember, str, datetime], Awaitable[list[str]]]


async def _pulse(session: AsyncSession, member: TeamMember, _: str, now: datetime) -> list[str]:
    zone = member.timezone or "UTC"
    p = await insights.pulse(session, now, zone)
    lines = [f"📊 Pulse · {local(now, zone):%a %d %b %H:%M} ({zone})"]
    people = sum(len(m) for m in p.regions.values())
    lines.append(
        f"On shift: {people} in {len(p.regions)} regions" if people else "On shift: nobody"
    )
    for region, members in p.regions.items():
        who = ", ".join(f"{m.name.split()[0]} {m.local_time:%H:%M}" for m in members[:4])
        more = f" +{len(members) - 4}" if len(members) > 4 else ""
        lines.append(f"· {region}: {who}{more}")
    oldest = f" (oldest {span(p.oldest_wait)})" if p.oldest_wait is not None else ""
    lines.append(f"Open: {p.open} · waiting for an agent: {p.waiting}{oldest}")
    lines.append(f"First response today: median {span(p.first_response_median_today)}")
    lines.append(f"SLA breaches: {p.sla_breaches}" + (" ⚠️" if p.sla_breaches else " ✅"))
    return lines


async def _customer(session: AsyncSession, member: TeamMember, q: str, now: datetime) -> list[str]:
    if not q.strip():
        return ["Who? /customer followed by a name, email or phone"]
    found = await insights.customer_summary(session, q, limit=3)
    if not found:
        return [f"No customer matches “{q}”."]
    c, zone = found[0], member.timezone
    value = f"value {c.lifetime_value}" + (" · VIP" if c.vip else "")
    lines = [f"👤 {c.name} · {value}", f"Stage: {c.journey_stage}"]
    if c.journey:
        steps = [c.journey[0].from_stage] + [
            f"{j.to_stage} ({local(j.at, zone):%d %b})" for j in c.journey[-3:]
        ]
        lines.append("Journey: " + " → ".join(steps))
    contacts = [*c.emails[:1], *c.phones[:1]]
    if contacts or c.timezone:
        lines.append(" · ".join([*contacts, *([c.timezone] if c.timezone else [])]))
    for line in c.open_conversations[:3]:
        who = line.assignee or "in the queue"
        lines.append(f"Open #{line.conversation_id} {channel_name(line.channel)} · {who}")
    if not c.open_conversations:
        lines.append("No open conversations")
    if c.last_contact is not None:
        lines.append(f"Last contact: {local(c.last_contact, zone):%d %b %H:%M} your time")
    for reason in c.open_interventions[:2]:
        lines.append(f"⚠️ {reason}")
    if len(found) > 1:
        lines.append("Also: " + ", ".join(o.name for o in found[1:]))
    return lines


async def _atrisk(session: AsyncSession, member: TeamMember, _: str, now: datetime) -> list[str]:
    found = await insights.at_risk(session, limit=10)
    if not found:
        return ["Nobody is flagged at risk right now. ✅"]
    lines = ["⚠️ At risk, most valuable first:"]
    for i, r in enumerate(found, 1):
        vip = " · VIP" if r.vip else ""
        since = f"{local(r.since, member.timezone):%d %b}"
        lines.append(f"{i}. {r.name} · {r.lifetime_value}{vip} · {r.journey_stage}")
        lines.append(f"   {r.reasons[0][:80]} (since {since})" if r.reasons else "")
    return [line for line in lines if line]


async def _handoffs(session: AsyncSession, member: TeamMember, _: str, now: datetime) -> list[str]:
    zone = member.timezone or "UTC"
    found = await insights.handoffs_today(session, now, zone)
    if not found:
        return [f"No handoffs today ({zone})."]
    lines = [f"🤝 Handoffs today: {len(found)}"]
    for h in found[-10:]:
        at = f"{local(h.created_at, zone):%H:%M}"
        who = f"{h.from_member or 'queue'} → {h.to_member or 'queue'}"
        if h.time_to_acknowledge is not None:
            state = f"acked in {span(h.time_to_acknowledge)}"
        else:
            state = f"{h.state}, waiting {span(now - h.created_at)}"
        lines.append(f"{at} #{h.conversation_id} {who} · {state}")
    acked = sorted(h.time_to_acknowledge for h in found if h.time_to_acknowledge is not None)
    if acked:
        lines.append(f"Median time to acknowledge: {span(acked[len(acked) // 2])}")
    return lines


async def _today(session: AsyncSession, member: TeamMember, _: str, now: datetime) -> list[str]:
    zone = member.timezone or "UTC"
    since, until = insights.local_day(now, zone)
    v = await insights.volume_stats(session, since, until)
    resolved = sum(line.resolved for line in v.by_channel)
    lines = [
        f"📈 Today since 00:00 {zone}",
        f"Messages in: {v.total_inbound} · new conversations: {v.total_opened} · "
        f"resolved: {resolved}",
    ]
    for title, rows, name in (
        ("By channel", v.by_channel, channel_name),
        ("By region", v.by_region, str),
    ):
        if rows:
            lines.append(f"{title}:")
        for line in rows[:5]:
            lines.append(
                f"· {name(line.key)}: {line.inbound} in, {line.opened} new, "
                f"{line.resolved} resolved, first reply {span(line.first_response_median)}"
            )
    return lines


_ANSWERS: dict[str, Answer] = {
    "pulse": _pulse,
    "customer": _customer,
    "atrisk": _atrisk,
    "handoffs": _handoffs,
    "today": _today,
}
