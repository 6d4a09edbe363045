"""Handing conversations over: at a shift end, by hand, and when nobody acknowledges.

Every handoff changes the owner through routing (history kind ``handoff``), writes a
``Handoff`` row with the context package, and publishes ``handoff.created``. With nobody
eligible the conversation goes back to the queue (owner None): never lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from handoff.bus import HANDOFF_CREATED, HANDOFF_ESCALATED, HandoffCreated, HandoffEscalated
from handoff.context import build_context_packages
from handoff.models import Handoff, ShiftEndMark
from heliograph import jobs
from heliograph.db import utcnow
from heliograph.settings import get_settings
from heliograph.texts import Text, dump
from inbox.assignment import lock_conversation, lock_conversations, open_conversations_of
from inbox.conversations import InvalidRequest, add_note, get_conversation
from inbox.models import Conversation
from routing.assignment import AssignmentRefused, Routed, refuse_non_answering
from routing.batch import assign_batch
from routing.history import record
from routing.models import TeamMember
from routing.policy import answers_customers
from routing.reads import active_members
from routing.schedule import is_on_shift, next_start_for, shift_end_at, shifts_between
from routing.suggest import suggest
from routing.team import get_member

LOOKBACK = timedelta(hours=6)  # shift ends a missed pass still catches


class HandoffNotFound(LookupError):
    pass


async def get_handoff(session: AsyncSession, handoff_id: int) -> Handoff:
    found = await session.get(Handoff, handoff_id)
    if found is None:
        raise HandoffNotFound(f"handoff {handoff_id} does not exist")
    return found


async def _write_many(
    session: AsyncSession,
    items: list[tuple[Conversation, int | None, int | None, str]],
    kind: str,
    now: datetime,
    note: str | None = None,
) -> list[Handoff]:
    """Handoff rows (conversation, from, to, reason) with their context packages, and one
    ``handoff.created`` event each."""
    packages = await build_context_packages(session, [c for c, _, _, _ in items], now=now)
    rows = []
    for conversation, from_member_id, to_member_id, reason in items:
        context = packages[conversation.id]  # type: ignore[index]
        if note:
            context["handoff_note"] = note
        rows.append(
            Handoff(
                conversation_id=conversation.id,  # type: ignore[arg-type]
                from_member_id=from_member_id,
                to_member_id=to_member_id,
                kind=kind,
                reason=str(reason),  # the English, as the API shows it
                reason_text=dump(reason),  # the same, for the web app to translate
                context=context,
                created_at=now,
            )
        )
    session.add_all(rows)
    await session.flush()
    await jobs.publish_many(
        session,
        HANDOFF_CREATED,
        [
            HandoffCreated(
                handoff_id=r.id,  # type: ignore[arg-type]
                conversation_id=r.conversation_id,
                from_member_id=r.from_member_id,
                to_member_id=r.to_member_id,
                kind=kind,
                reason=r.reason,
            )
            for r in rows
        ],
    )
    return rows


async def _write(
    session: AsyncSession,
    conversation: Conversation,
    from_member_id: int | None,
    to_member_id: int | None,
    kind: str,
    reason: str,
    now: datetime,
    note: str | None = None,
) -> Handoff:
    [row] = await _write_many(
        session, [(conversation, from_member_id, to_member_id, reason)], kind, now, note
    )
    return row


async def _hand_over(
    session: AsyncSession,
    conversations: list[Conversation],
    *,
    from_member_id: int | None,
    exclude: Iterable[int],
    prefix: str,
    kind: str,
    now: datetime,
    note: str | None = None,
) -> list[Handoff]:
    """Route each (locked) conversation to the best eligible member but ``exclude``;
    nobody eligible: back to the queue. One Handoff row per conversation."""
    excluded = [m for m in exclude if m is not None]
    routed = await assign_batch(
        session,
        conversations,
        now=now,
        kind="handoff",
        exclude={c.id: excluded for c in conversations},  # type: ignore[misc]
        reason_prefix={c.id: prefix for c in conversations},  # type: ignore[misc]
    )
    by_id = {c.id: c for c in conversations}
    items = []
    for result in routed:
        conversation = by_id[result.conversation_id]
        reason = result.reason
        if result.member_id is None:
            reason = prefix + Text(
                "nobody eligible (%(why)s); back to the queue", why=result.reason
            )
            if conversation.assignee_id is not None:
                await record(session, conversation, None, "handoff", reason, now=now)
        items.append((conversation, from_member_id, result.member_id, reason))
    return await _write_many(session, items, kind, now, note)


def last_shift_end(
    member: TeamMember, now: datetime, lookback: timedelta = LOOKBACK
) -> datetime | None:
    """The end of the member's latest on-shift stretch that ended in ``(now - lookback, now]``;
    None when on shift now or no stretch ended in the window."""
    if is_on_shift(member, now):
        return None
    ended = [s.end for s in shifts_between(member, now - lookback, now) if s.end <= now]
    return max(ended) if ended else None


async def handoff_shift_end(
    session: AsyncSession,
    member_id: int,
    now: datetime | None = None,
    *,
    shift_end: datetime | None = None,
) -> list[Handoff]:
    """Hand every open conversation of ``member_id`` over for the shift that ended at
    ``shift_end`` (default: their latest ended shift, else ``now``). At most once per
    (member, shift end): a second call returns []. The caller commits."""
    now = now or utcnow()
    member = await get_member(session, member_id)
    shift_end = shift_end or last_shift_end(member, now) or now
    return await _shift_ends(session, [(member, shift_end)], now)


async def _shift_ends(
    session: AsyncSession, due: list[tuple[TeamMember, datetime]], now: datetime
) -> list[Handoff]:
    """Many members' shift ends in one batch: marks first (so each happens once), then
    one routing batch and one write of the handoffs."""
    marks: dict[int, ShiftEndMark] = {}
    for member, end in due:
        if await session.get(ShiftEndMark, (member.id, end)) is not None:
            continue
        mark = ShiftEndMark(member_id=member.id, shift_end=end, done_at=now)  # type: ignore[arg-type]
        session.add(mark)
        marks[member.id] = mark  # type: ignore[index]
    if not marks:
        return []
    await session.flush()
    names = {m.id: m.name for m, _ in due}
    open_ids = []
    for member_id in marks:
        open_ids += [c.id for c in await open_conversations_of(session, member_id)]
    conversations = [
        c
        for c in await lock_conversations(session, open_ids)  # type: ignore[arg-type]
        if c.assignee_id in marks
    ]
    leaving = {c.id: c.assignee_id for c in conversations}
    routed = await assign_batch(
        session,
        conversations,
        now=now,
        kind="handoff",
        exclude={cid: [mid] for cid, mid in leaving.items()},  # type: ignore[misc]
        reason_prefix={
            cid: Text("handoff from %(name)s (shift ended): ", name=names[mid])  # type: ignore[index]
            for cid, mid in leaving.items()
        },
    )
    by_id = {c.id: c for c in conversations}
    items = []
    for result in routed:
        conversation = by_id[result.conversation_id]
        from_id = leaving[conversation.id]
        reason = result.reason
        if result.member_id is None:
            reason = Text(
                "handoff from %(name)s (shift ended): nobody eligible (%(why)s); back to the queue",
                name=names[from_id],  # type: ignore[index]
                why=result.reason,
            )
            await record(session, conversation, None, "handoff", reason, now=now)
        items.append((conversation, from_id, result.member_id, reason))
        marks[from_id].handed += 1  # type: ignore[index]
    return await _write_many(session, items, "shift_end", now)


async def shift_end_pass(
    session: AsyncSession, now: datetime | None = None, lookback: timedelta = LOOKBACK
) -> int:
    """Every active member whose shift ended in the window and who has not been handed
    off for that end yet, in one batch. Returns how many conversations were handed over."""
    now = now or utcnow()
    members = await active_members(session)
    due = [(m, end) for m in members if (end := last_shift_end(m, now, lookback)) is not None]
    if not due:
        return 0
    done = {
        (m, e if e.tzinfo else e.replace(tzinfo=now.tzinfo))
        for m, e in (
            await session.execute(
                select(ShiftEndMark.member_id, ShiftEndMark.shift_end).where(
                    ShiftEndMark.shift_end > now - lookback  # type: ignore[operator]
                )
            )
        ).all()
    }
    due = [(m, end) for m, end in due if (m.id, end) not in done]
    return len(await _shift_ends(session, due, now))


@dataclass(frozen=True)
class Proposal:
    """Whom a handoff would give a conversation to at ``at``, and why; nothing written.

    ``when``: ``"now"`` (routing's pick among those on shift now, ``until`` their shift's
    end), ``"next"`` (nobody may take it now: whoever is next on shift, ``starts`` then) or
    ``"queue"`` (nobody: back to the queue). ``reason`` is routing's words (``"Oliver
    Bennett — New York 09:10, speaks en, 0/8 open"``) or why nobody."""

    conversation_id: int
    at: datetime
    member: TeamMember | None
    reason: str
    when: str
    until: datetime | None = None
    starts: datetime | None = None


async def propose(
    session: AsyncSession,
    conversation_id: int,
    now: datetime | None = None,
    *,
    actor_id: int | None = None,
    later: bool = True,
) -> Proposal:
    """Whom a handoff of the conversation by ``actor_id`` (default: its holder) would pick
    now: routing's choice among the members on shift, never the holder nor the actor
    (``routing.suggest``, the router's rule); with nobody now, and ``later``, whoever is
    next on shift (manual handoff); else the queue (as a shift end does: ``later=False``).
    The pages show it; ``handoff_manual`` decides in the same order, under the members'
    lock. Raises ``ConversationNotFound``."""
    now = now or utcnow()
    conversation = await get_conversation(session, conversation_id)
    exclude = {m for m in (conversation.assignee_id, actor_id) if m is not None}
    suggestion = await suggest(session, conversation_id, now, exclude=exclude)
    if suggestion.member_id is not None:
        member = await get_member(session, suggestion.member_id)
        until = shift_end_at(member, now)
        until = until if until is not None and until - now <= timedelta(days=1) else None
        return Proposal(conversation_id, now, member, suggestion.reason, "now", until=until)
    if not later:
        return Proposal(conversation_id, now, None, suggestion.reason, "queue")
    return await _next_on_shift(session, conversation, exclude, now)


async def _next_on_shift(
    session: AsyncSession, conversation: Conversation, exclude: set[int], now: datetime
) -> Proposal:
    """Nobody may take it now: whoever starts next, who speaks its language if anyone
    does; nobody scheduled: the queue."""
    members = await active_members(session)
    candidates = [m for m in members if m.id not in exclude and answers_customers(m)]
    found = next_start_for(candidates, now, conversation.language) or next_start_for(
        candidates, now
    )
    cid: int = conversation.id  # type: ignore[assignment]
    if found is None:
        nobody = Text("nobody eligible or scheduled; back to the queue")
        return Proposal(cid, now, None, nobody, "queue")
    starts, member = found
    reason = Text("nobody eligible now; to %(name)s, next on shift", name=member.name)
    return Proposal(cid, now, member, reason, "next", starts=starts)


async def handoff_manual(
    session: AsyncSession,
    conversation_id: int,
    actor: TeamMember,
    *,
    to_member_id: int | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Handoff:
    """An agent hands over their own conversation (a lead any): to a person, or to the
    best eligible member now, else whoever is next on shift, else the queue."""
    now = now or utcnow()
    conversation = await lock_conversation(session, conversation_id)
    if conversation.status == "resolved":
        raise AssignmentRefused(
            Text("conversation %(id)s is resolved; reopen it first", id=conversation_id)
        )
    is_lead = actor.role in ("lead", "admin")
    if not is_lead and conversation.assignee_id != actor.id:
        raise AssignmentRefused(
            Text("agents may hand over only their own conversations; ask a lead")
        )
    holder = conversation.assignee_id
    if holder:
        holder_name = (await get_member(session, holder)).name
        prefix = Text(
            "handoff by %(actor)s from %(holder)s: ", actor=actor.name, holder=holder_name
        )
    else:
        prefix = Text("handoff by %(actor)s from the queue: ", actor=actor.name)
    if note is not None and note.strip():
        await add_note(session, conversation.id, note, actor.id)  # type: ignore[arg-type]
    if to_member_id is not None:
        member = await get_member(session, to_member_id)
        if not member.active:
            raise AssignmentRefused(
                Text("%(name)s is no longer active on the team", name=member.name)
            )
        refuse_non_answering(member)
        if to_member_id == holder:
            raise InvalidRequest(Text("the conversation is already %(name)s's", name=member.name))
        if is_on_shift(member, now):
            reason = prefix + Text("to %(name)s", name=member.name)
        else:
            reason = prefix + Text("to %(name)s (off shift)", name=member.name)
        await record(
            session, conversation, to_member_id, "handoff", reason, now=now, by_member_id=actor.id
        )
        return await _write(
            session, conversation, holder, to_member_id, "manual", reason, now, note
        )
    exclude = {m for m in (holder, actor.id) if m is not None}
    # ``propose``'s order, deciding under the members' lock so capacity holds: routing's
    # pick among those on shift now, else whoever is next on shift, else the queue.
    routed: list[Routed] = await assign_batch(
        session,
        [conversation],
        now=now,
        kind="handoff",
        exclude={conversation.id: exclude},  # type: ignore[dict-item]
        reason_prefix={conversation.id: prefix},  # type: ignore[dict-item]
    )
    if routed and routed[0].member_id is not None:
        to, why = routed[0].member_id, routed[0].reason
        return await _write(session, conversation, holder, to, "manual", why, now, note)
    proposal = await _next_on_shift(session, conversation, exclude, now)
    if proposal.member is not None:
        reason = prefix + proposal.reason
        to_id = proposal.member.id
        await record(
            session, conversation, to_id, "handoff", reason, now=now, by_member_id=actor.id
        )
        return await _write(session, conversation, holder, to_id, "manual", reason, now, note)
    reason = prefix + proposal.reason
    if holder is not None:
        await record(session, conversation, None, "handoff", reason, now=now, by_member_id=actor.id)
    return await _write(session, conversation, holder, None, "manual", reason, now, note)


async def acknowledge(
    session: AsyncSession, handoff_id: int, member: TeamMember, now: datetime | None = None
) -> Handoff:
    """The receiver confirms they have it: stops the escalation clock."""
    now = now or utcnow()
    row = await get_handoff(session, handoff_id)
    if row.to_member_id != member.id:
        raise AssignmentRefused(Text("only the receiver acknowledges a handoff"))
    if row.acknowledged_at is not None:
        return row
    conversation = await lock_conversation(session, row.conversation_id)
    if conversation.assignee_id != member.id:
        raise AssignmentRefused(Text("the conversation has moved on since; nothing to acknowledge"))
    row.state = "acknowledged"
    row.acknowledged_at = now
    session.add(row)
    await session.flush()
    return row


async def escalate_unacknowledged(session: AsyncSession, now: datetime | None = None) -> int:
    """Handoffs not acknowledged within ``handoff_ack_minutes``: re-route once (a new
    handoff of kind escalation); a re-routed one still unacknowledged alerts the leads
    (``handoff.escalated``). Returns how many handoffs were escalated."""
    now = now or utcnow()
    minutes = get_settings().handoff_ack_minutes
    if minutes <= 0:
        return 0
    stale = (
        (
            await session.execute(
                select(Handoff)
                .where(
                    Handoff.state == "pending",
                    Handoff.to_member_id.is_not(None),  # type: ignore[union-attr]
                    Handoff.created_at <= now - timedelta(minutes=minutes),  # type: ignore[operator]
                )
                .order_by(Handoff.id)  # type: ignore[arg-type]
            )
        )
        .scalars()
        .all()
    )
    count = 0
    for row in stale:
        row.state = "escalated"
        row.escalated_at = now
        session.add(row)
        conversation = await lock_conversation(session, row.conversation_id)
        if conversation.status == "resolved" or conversation.assignee_id != row.to_member_id:
            continue  # moved on already: nothing to chase
        count += 1
        waited = (now - _aware(row.created_at)).total_seconds()
        if row.kind != "escalation":
            receiver = await get_member(session, row.to_member_id)  # type: ignore[arg-type]
            late = Text(
                "%(name)s did not acknowledge in %(minutes)s min",
                name=receiver.name,
                minutes=format(minutes, "g"),
            )
            handed = await _hand_over(
                session,
                [conversation],
                from_member_id=row.to_member_id,
                exclude=[row.to_member_id, row.from_member_id],  # type: ignore[list-item]
                prefix=Text("handoff escalated (%(late)s): ", late=late),
                kind="escalation",
                now=now,
            )
            if handed and handed[0].to_member_id is not None:
                continue
        await jobs.publish(
            session,
            HANDOFF_ESCALATED,
            HandoffEscalated(
                handoff_id=row.id,  # type: ignore[arg-type]
                conversation_id=row.conversation_id,
                member_id=row.to_member_id,
                waited_s=waited,
                reason="not acknowledged after re-routing"
                if row.kind == "escalation"
                else "not acknowledged and nobody else eligible",
            ),
        )
    await session.flush()
    return count


def _aware(at: datetime) -> datetime:
    from datetime import UTC

    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def handoffs_of(session: AsyncSession, conversation_id: int) -> list[Handoff]:
    rows = await session.execute(
        select(Handoff).where(Handoff.conversation_id == conversation_id).order_by(Handoff.id)  # type: ignore[arg-type]
    )
    return list(rows.scalars().all())


async def list_handoffs(
    session: AsyncSession, state: str | None = None, limit: int = 100
) -> list[Handoff]:
    stmt = select(Handoff)
    if state is not None:
        stmt = stmt.where(Handoff.state == state)
    rows = await session.execute(stmt.order_by(Handoff.id.desc()).limit(limit))  # type: ignore[union-attr]
    return list(rows.scalars().all())
