"""Routing a conversation, the queue of those nobody could take, and moving on.

- ``route_conversation``: tags and priority from the message, then the policy; with
  nobody eligible the conversation waits (and the customer is told, once per wait, why
  and when we will answer, in their own time zone: ``wait_message``).
- ``drain_queue``: the queue, most urgent and longest waiting first, to whoever is
  eligible now (every 30 s on the scheduler, when capacity frees, when someone comes
  online, and at the instant we promised a customer).
- ``reroute_unanswered``: an assignment with no agent reply within the priority's
  limit goes to someone else eligible; ``conversation.rerouted`` tells the first agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytz
from sqlalchemy import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.settings import get_settings
from heliograph.texts import Text
from inbox import assignment as inbox_assignment
from inbox.conversations import ConversationNotFound, reply
from inbox.models import Conversation
from inbox.reads import last_inbound_at
from routing.assignment import (
    CustomerView,
    Locked,
    Routed,
    assign_best,
    customer_of,
    lock_many_for_routing,
    set_availability,
    wanted_for,
)
from routing.batch import assign_batch
from routing.bus import CONVERSATION_REROUTED, DRAIN, ConversationRerouted, Drain
from routing.history import record
from routing.models import RoutingWait, TeamMember
from routing.policy import NobodyFree, PolicyConfig, Wanted, answers_customers, nobody_free
from routing.schedule import next_start_for
from routing.snapshot import TeamSnapshot, team_snapshot
from routing.topics import tags_for_programs, tags_for_text
from transcription.language import language_name

_BATCH = 50  # conversations per drain transaction: short write locks on SQLite


@dataclass(frozen=True)
class QueueEntry:
    conversation: Conversation
    wait: RoutingWait | None


@dataclass(frozen=True)
class Inbound:
    """A message to route after (``message.received``; no message: a reopen by status)."""

    conversation_id: int
    message_id: int | None = None
    reopened: bool = False


async def route_conversation(
    session: AsyncSession,
    conversation_id: int,
    *,
    message_id: int | None = None,
    reopened: bool = False,
    now: datetime | None = None,
    config: PolicyConfig | None = None,
) -> Routed | None:
    """Route after an inbound message: ``route_conversations`` of one. None: nothing
    to do (resolved, snoozed, or already assigned and not reopened). A reopened
    conversation goes to whoever is eligible now; its previous agent keeps it only if
    they are."""
    found = await route_conversations(
        session, [Inbound(conversation_id, message_id, reopened)], now=now, config=config
    )
    if conversation_id not in found:
        raise ConversationNotFound(f"conversation {conversation_id} does not exist")
    return found[conversation_id]


async def route_conversations(
    session: AsyncSession,
    inbound: Sequence[Inbound],
    *,
    now: datetime | None = None,
    config: PolicyConfig | None = None,
) -> dict[int, Routed | None]:
    """Route after inbound messages, their conversations together (the ``routing.route``
    batch): one statement locks the conversations in id order and reads their customers,
    previous agents and queue waits; one reads the messages' texts, one the customers'
    programs (topic tags, VIP priority); those that need an owner go to the policy in one
    ``assign_batch`` (one team snapshot, one lock of the members on duty), in id order;
    those nobody can take wait in the queue (``wait_in_queue``). A conversation's
    messages count together: the tags of each, reopened if any reopened it.

    The result per conversation found: None when there was nothing to do (resolved,
    snoozed, or assigned and not reopened), else the decision. The caller commits."""
    now = now or utcnow()
    config = config or PolicyConfig.from_settings()
    messages: dict[int, list[Inbound]] = {}
    for item in inbound:
        messages.setdefault(item.conversation_id, []).append(item)
    locked = await lock_many_for_routing(session, messages)
    results: dict[int, Routed | None] = dict.fromkeys(locked)
    live = [
        found
        for _, found in sorted(locked.items())
        if found.conversation.status not in ("resolved", "snoozed")
    ]
    if not live:
        return results
    customers = {found.conversation.id: await customer_of(session, found) for found in live}
    message_ids = [
        i.message_id
        for found in live
        for i in messages[found.conversation.id]  # type: ignore[index]
        if i.message_id is not None
    ]
    texts = await inbox_assignment.message_texts(session, message_ids)
    programs = await tags_for_programs(session, [c.id for c in customers.values()])  # type: ignore[misc]
    rules = get_settings().routing_topic_keywords
    to_route: list[tuple[Locked, bool]] = []
    for found in live:
        conversation = found.conversation
        customer = customers[conversation.id]  # type: ignore[index]
        items = sorted(messages[conversation.id], key=lambda i: i.message_id or 0)  # type: ignore[index]
        tags: list[str] = []
        for item in items:  # as routing them one by one: each text's tags, then programs'
            if item.message_id is not None:
                tags += tags_for_text(texts.get(item.message_id, ""), rules)
            tags += programs.get(customer.id, [])  # type: ignore[arg-type]
        _classify(conversation, customer, tags, config)
        reopened = any(i.reopened for i in items)
        if conversation.assignee_id is None or reopened:
            to_route.append((found, reopened))
    ended = [found.conversation.id for found, reopened in to_route if reopened and found.waiting]
    if ended:
        await _end_waits(session, ended)  # type: ignore[arg-type]
    decided = await assign_batch(
        session, [found.conversation for found, _ in to_route], now=now, config=config
    )
    snapshot: TeamSnapshot | None = None
    for (found, _), routed in zip(to_route, decided, strict=True):
        results[routed.conversation_id] = routed
        if routed.member_id is None:
            snapshot = snapshot or await team_snapshot(session, config)
            customer = customers[routed.conversation_id]
            await _wait_unrouted(session, found, customer, routed, now, config, snapshot)
    return results


async def _wait_unrouted(
    session: AsyncSession,
    locked: Locked,
    customer: CustomerView,
    routed: Routed,
    now: datetime,
    config: PolicyConfig,
    snapshot: TeamSnapshot,
) -> Routed:
    """Nobody can take it now: into the queue (a reopened one leaves its agent)."""
    conversation = locked.conversation
    if conversation.assignee_id is not None:
        # Reopened while its agent is asleep, away or full: not theirs to wait on.
        gone = await session.get(TeamMember, conversation.assignee_id)
        name = gone.name if gone is not None else Text("member %(id)s", id=conversation.assignee_id)
        await record(
            session,
            conversation,
            None,
            "queued",
            Text(
                "reopened while %(name)s cannot take it (%(why)s); waiting in the queue",
                name=name,
                why=routed.reason,
            ),
            now=now,
        )
        snapshot.moved(None, routed.previous_member_id, conversation.channel)
    await wait_in_queue(
        session, conversation, customer, now, routed.reason, config, snapshot, locked
    )
    return routed


def _classify(
    conversation: Conversation, customer: CustomerView, tags: list[str], config: PolicyConfig
) -> None:
    """Topic tags (from the message texts and the customer's programs); VIP priority."""
    inbox_assignment.add_topic_tags(conversation, tags)
    if customer.vip:
        inbox_assignment.raise_priority(conversation, config.vip_priority)


async def _end_waits(session: AsyncSession, conversation_ids: list[int]) -> None:
    await session.execute(
        delete(RoutingWait).where(RoutingWait.conversation_id.in_(conversation_ids))  # type: ignore[attr-defined]
    )


async def wait_in_queue(
    session: AsyncSession,
    conversation: Conversation,
    customer: CustomerView,
    now: datetime,
    reason: str,
    config: PolicyConfig,
    snapshot: TeamSnapshot,
    locked: Locked | None = None,
) -> RoutingWait:
    """Note why it waits; tell the customer why and when we will answer (once per
    wait), and have the queue drained at the promised instant."""
    wait = await session.get(RoutingWait, conversation.id)
    if wait is None:
        wait = RoutingWait(conversation_id=conversation.id, since=now, reason=str(reason))  # type: ignore[arg-type]
        session.add(wait)
    wait.reason = str(reason)  # the English (a Text's words, heliograph.texts)
    notify = config.wait_notice and wait.notified_at is None
    notify = notify and await _just_wrote(session, conversation, now, config)
    if wait.promised_at is None or notify:
        wanted = await wanted_for(session, conversation, locked=locked)
    if wait.promised_at is None:
        wait.promised_at = promised_time(snapshot, wanted, now, config)
        if wait.promised_at is not None:
            await jobs.enqueue(
                session,
                DRAIN,
                Drain(reason="promised shift start"),
                run_at=wait.promised_at,
                dedupe_key=f"routing.drain:{wait.promised_at.isoformat()}",
            )
    if notify:
        # The same reading of the team as the decision that found nobody.
        why = nobody_free(snapshot.on_duty(now), wanted, now, snapshot.load, config)
        text = wait_message(wait.promised_at, customer.timezone, now, why)
        if text is not None:
            await reply(session, conversation.id, text, author_id=None, author_type="system")  # type: ignore[arg-type]
            wait.notified_at = now
    await session.flush()
    return wait


async def _just_wrote(
    session: AsyncSession, conversation: Conversation, now: datetime, config: PolicyConfig
) -> bool:
    """The wait notice answers someone who has just written, never an old message (an
    imported history, a queue left for days): that would be a proactive message. The
    provider's time of their last message says when they wrote."""
    window = config.wait_notice_window_minutes
    if not window:
        return True
    last = await last_inbound_at(session, conversation.id)  # type: ignore[arg-type]
    if last is None:
        return True
    last = last if last.tzinfo is not None else last.replace(tzinfo=UTC)
    return (now - last).total_seconds() <= window * 60


def promised_time(
    snapshot: TeamSnapshot, wanted: Wanted, now: datetime, config: PolicyConfig
) -> datetime | None:
    """When someone who may take it next comes on shift. None when that cannot be said
    honestly: someone who could take it is on shift already (only busy or away, so the
    answer comes when they free up), or nobody has a shift ahead."""
    language = wanted.language if config.require_language else None
    tags = wanted.tags if config.require_expertise else None
    members = [
        m
        for m in snapshot.members.values()
        if m.active
        and answers_customers(m)
        and m.id not in wanted.exclude
        and m.capacity > 0
        # Offline by their own choice: not coming at their shift start.
        and m.availability != "offline"
    ]
    matching = [
        m
        for m in members
        if (language is None or language in m.speaks) and (not tags or tags & m.knows)
    ]
    if any(m.on_shift(now) for m in matching):
        return None
    found = next_start_for(matching, now)
    return found[0] if found else None


# Why the customer waits, in their words (``NobodyFree.kind``); "{language}" and "{tags}"
# name what the conversation needs. Replies go through the inbox's reply translation,
# so a customer who writes Japanese reads this in Japanese where the team translates.
_WHY = {
    "off_shift": "Our team is offline right now",
    "language": "Nobody who speaks {language} is on shift right now",
    "expertise": "Nobody who handles {tags} is on shift right now",
    "away": "Nobody on shift is available right now",
    "capacity": "Everyone on shift is helping other customers right now",
}
# When no start time can be promised honestly, what the answer waits for instead.
_UNTIMED = {
    "away": "we'll answer as soon as someone is back",
    "capacity": "we'll answer as soon as someone is free",
}


def wait_message(
    promised_at: datetime | None,
    customer_timezone: str | None,
    now: datetime,
    why: NobodyFree | None = None,
) -> str | None:
    """ "Nobody who speaks Japanese is on shift right now; we'll answer at 23:20 your
    time." The reason is the routing decision's; the time is the customer's zone (UTC if
    unknown). None: nothing true to promise (nobody has a shift ahead)."""
    why = why or NobodyFree("off_shift")
    sentence = _WHY.get(why.kind, "Nobody can take your conversation right now").format(
        language=language_name(why.language or ""), tags=", ".join(why.tags)
    )
    if promised_at is None:
        untimed = _UNTIMED.get(why.kind)
        return None if untimed is None else f"Thanks for your message. {sentence}; {untimed}."
    when = _when(promised_at, customer_timezone, now)
    return f"Thanks for your message. {sentence}; we'll answer {when}."


def _when(promised_at: datetime, customer_timezone: str | None, now: datetime) -> str:
    """ "tomorrow at 09:00 your time", in the customer's zone (UTC if unknown)."""
    known = bool(customer_timezone) and customer_timezone in pytz.all_timezones_set
    tz = pytz.timezone(customer_timezone) if known else pytz.UTC  # type: ignore[arg-type]
    local = promised_at.astimezone(tz)
    today = now.astimezone(tz).date()
    if local.date() == today:
        day = ""
    elif local.date() == today + timedelta(days=1):
        day = "tomorrow "
    else:
        day = f"on {local:%A} "
    return f"{day}at {local:%H:%M} {'your time' if known else 'UTC'}"


async def queue_entries(session: AsyncSession, limit: int = 200) -> list[QueueEntry]:
    conversations = await inbox_assignment.queued(session, limit)
    waits = {}
    if conversations:
        rows = await session.execute(
            select(RoutingWait).where(
                RoutingWait.conversation_id.in_([c.id for c in conversations])  # type: ignore[attr-defined]
            )
        )
        waits = {w.conversation_id: w for w in rows.scalars().all()}
    return [QueueEntry(c, waits.get(c.id)) for c in conversations]  # type: ignore[arg-type]


async def drain_queue(db: Database, now: datetime | None = None, limit: int = 1000) -> int:
    """Assign queued conversations to whoever is eligible now, in batches of one
    transaction each (``routing.batch.assign_batch``). Returns how many."""
    now = now or utcnow()
    config = PolicyConfig.from_settings()
    async with db.read_session() as session:
        ids = [c.id for c in await inbox_assignment.queued(session, limit)]
    assigned = 0
    for start in range(0, len(ids), _BATCH):
        async with db.session() as session:
            snapshot = await team_snapshot(session, config)
            if not snapshot.on_duty(now):
                break  # nobody on shift: nothing in the queue can move
            moved, stop = await _drain_batch(session, ids[start : start + _BATCH], now, config)
            await session.commit()
        assigned += moved
        if stop:
            break
    if assigned:
        jobs.wake_workers()
    return assigned


async def _drain_batch(
    session: AsyncSession,
    ids: list[int | None],
    now: datetime,
    config: PolicyConfig,
) -> tuple[int, bool]:
    locked = {c.id: c for c in await inbox_assignment.lock_conversations(session, ids)}  # type: ignore[arg-type]
    # Still waiting, in the queue's order (most urgent, longest waiting first).
    waiting = [
        c
        for c in (locked.get(i) for i in ids)
        if c is not None and c.assignee_id is None and c.status not in ("resolved", "snoozed")
    ]
    routed = await assign_batch(session, waiting, now=now, config=config)
    moved = sum(r.member_id is not None for r in routed)
    # Without hard requirements or per-channel capacity, nobody for one means nobody
    # for the rest of the queue either: stop rather than ask again for each.
    uniform = not (config.require_language or config.require_expertise or config.per_channel)
    return moved, uniform and moved < len(routed)


async def reroute_unanswered(db: Database, now: datetime | None = None, limit: int = 200) -> int:
    """Move assignments nobody answered in time; tell the first agent. Returns how many."""
    now = now or utcnow()
    config = PolicyConfig.from_settings()
    async with db.session() as session:
        stale = await inbox_assignment.unanswered(session, now, config.unanswered_minutes, limit)
        ids = [c.id for c in stale]
        await session.commit()
    moved = 0
    for start in range(0, len(ids), _BATCH):
        async with db.session() as session:
            snapshot = await team_snapshot(session, config)
            for conversation_id in ids[start : start + _BATCH]:
                moved += await _reroute_one(session, conversation_id, now, config, snapshot)  # type: ignore[arg-type]
            await session.commit()
    if moved:
        jobs.wake_workers()
    return moved


async def _reroute_one(
    session: AsyncSession,
    conversation_id: int,
    now: datetime,
    config: PolicyConfig,
    snapshot: TeamSnapshot,
) -> int:
    conversation = await inbox_assignment.lock_conversation(session, conversation_id)
    if not inbox_assignment.is_unanswered(conversation, now, config.unanswered_minutes):
        return 0  # answered, resolved or moved since the first look
    first_id: int = conversation.assignee_id  # type: ignore[assignment]
    first = await session.get(TeamMember, first_id)
    minutes = config.unanswered_minutes.get(conversation.priority, 0)
    prefix = Text(
        "%(name)s did not reply within %(minutes)s min; ",
        name=first.name if first else first_id,
        minutes=format(minutes, "g"),
    )
    routed = await assign_best(
        session,
        conversation,
        now=now,
        kind="reroute",
        exclude=frozenset({first_id}),
        reason_prefix=prefix,
        config=config,
        snapshot=snapshot,
    )
    if routed.member_id is None:
        return 0  # nobody else is eligible: it stays, and we look again next time
    if config.away_on_missed:
        await set_availability(session, first_id, "away", auto=True, now=now)
    await jobs.publish(
        session,
        CONVERSATION_REROUTED,
        ConversationRerouted(
            conversation_id=conversation_id,
            from_member_id=first_id,
            to_member_id=routed.member_id,
            assignment_id=routed.assignment_id,
            reason=routed.reason,
        ),
    )
    return 1
