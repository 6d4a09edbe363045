"""Demo data for ``make run``: the five-region team and a few hundred customers, reproducibly.

The demo's conversations are history: its replies and wait notices are stored as sent
when written, and nothing is left queued for a provider (``_as_history``), so seeding a
database whose channels point at real providers writes to nobody."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import events, interventions, programs
from crm_core.bus import SEND_INTERVENTION
from crm_core.identity import SenderProfile
from crm_core.models import Customer, Identity, Intervention
from heliograph.bulk import chunks
from heliograph.db import utcnow
from heliograph.models import Job
from inbox import conversations
from inbox.bus import DELIVER_REPLY
from inbox.ingest import AcceptResult, InboundMessage, store_batch
from inbox.models import Conversation, Message
from routing.models import RoutingWait, TeamMember
from routing.team import import_team

TEAM_FILE = Path(__file__).with_name("demo_data") / "team.yaml"

FIRST = [
    "Ana",
    "Bruno",
    "Chen",
    "Daria",
    "Emeka",
    "Fatima",
    "Giulia",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Yara",
    "Zoe",
]
LAST = [
    "Silva",
    "Okafor",
    "Novak",
    "Tanaka",
    "Garcia",
    "Ivanova",
    "Haddad",
    "Kim",
    "Rossi",
    "Müller",
    "Costa",
    "Nguyen",
    "Petrov",
    "Smith",
    "Lopez",
    "Sato",
    "Ahmed",
    "Kowalski",
]
PLACES = [
    ("pt", "America/Sao_Paulo", "+5511"),
    ("en", "Europe/London", "+4477"),
    ("ru", "Europe/Moscow", "+7916"),
    ("es", "America/Mexico_City", "+5255"),
    ("en", "America/New_York", "+1212"),
    ("ms", "Asia/Kuala_Lumpur", "+6012"),
    ("ja", "Asia/Tokyo", "+8190"),
    ("de", "Europe/Berlin", "+4915"),
]
OPENERS = [
    "Hi, I was charged twice for the Mindful Mornings course.",
    "How do I join tomorrow's live call?",
    "I can't log in since the update.",
    "Can I pause my membership for a month?",
    "Where do I find the lesson 4 workbook?",
    "I finished the program — what should I take next?",
    "The app crashes when I open the meditation timer.",
    "Do you offer a family plan?",
]
REPLIES = [
    "Thanks for reaching out! Let me look into that for you.",
    "I've fixed that on our side — could you try again?",
    "Here's the link you need: https://heliograph.example/help",
]


async def seed_demo(session: AsyncSession, customers: int = 300, seed: int = 7) -> str:
    rng = random.Random(seed)
    # keep_missing: the demo adds its team; it does not take anyone else's access away.
    text = TEAM_FILE.read_text(encoding="utf-8")
    created, updated, _, _ = await import_team(session, text, keep_missing=True)
    agents = (
        (await session.execute(select(TeamMember).where(TeamMember.role.in_(("agent", "lead")))))  # type: ignore[attr-defined]
        .scalars()
        .all()
    )
    opened = replied = resolved = 0
    now = utcnow()
    for n in range(customers):
        language, tz, prefix = rng.choice(PLACES)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        sender = SenderProfile(
            channel="api",
            external_id=f"demo-{n:04d}",
            name=name,
            email=f"{name.split()[0].lower()}.{n}@example.com",
            phone=f"{prefix}{rng.randrange(1000000, 9999999)}",
            language=language,
            timezone=tz,
        )
        result = await _store(
            session,
            InboundMessage(
                channel="api",
                provider_message_id=f"demo-{n:04d}-1",
                sender=sender,
                text=rng.choice(OPENERS),
                sent_at=now - timedelta(minutes=rng.randrange(5, 60 * 72)),
            ),
        )
        if result.duplicate:
            continue
        opened += 1
        roll = rng.random()
        if roll < 0.55:
            agent = rng.choice(agents)
            await conversations.reply(
                session, result.conversation_id, rng.choice(REPLIES), agent.id
            )
            replied += 1
            if roll < 0.3:
                await conversations.set_status(session, result.conversation_id, "resolved")
                resolved += 1
    crm = await seed_crm(session, rng)
    settled = await _as_history(session)
    return (
        f"demo loaded: team {created} created / {updated} updated; {opened} conversations, "
        f"{replied} answered, {resolved} resolved; {crm}; {settled} outbound messages kept "
        "as history, none queued"
    )


async def _store(session: AsyncSession, msg: InboundMessage) -> AcceptResult:
    """``msg`` as a batch of one in the demo's transaction (the intake's path, less its
    commit: the whole demo is one transaction)."""
    await session.flush()  # the Core statements below see what the session changed
    (result,) = await session.run_sync(lambda s: store_batch(s.connection(), [msg]))
    assert isinstance(result, AcceptResult)
    return result


async def _demo_customers(session: AsyncSession) -> list[int]:
    stmt = (
        select(Identity.customer_id)
        .where(Identity.channel == "api", Identity.external_id.like("demo-%"))  # type: ignore[attr-defined]
        .order_by(Identity.customer_id)
    )
    return list((await session.execute(stmt)).scalars().all())


async def _as_history(session: AsyncSession) -> int:
    """The demo customers' queued messages become history (sent when written), and their
    delivery and automatic-send jobs are closed: nothing of the demo reaches a provider."""
    customers = set(await _demo_customers(session))
    queued: list[int] = []
    for part in chunks(sorted(customers)):
        rows = await session.execute(
            select(Message.id).where(
                Message.customer_id.in_(part),  # type: ignore[union-attr]
                Message.direction == "out",
                Message.delivery_status == "queued",
            )
        )
        queued.extend(rows.scalars().all())
    for part in chunks(queued):
        await session.execute(
            update(Message)
            .where(Message.id.in_(part))  # type: ignore[union-attr]
            .values(delivery_status="sent", sent_at=Message.created_at, translation_status=None)
        )
    await _told_already(session, customers)
    demo_interventions = await _demo_interventions(session, customers)
    pending = await session.execute(
        select(Job).where(
            Job.status == "pending",
            Job.kind.in_((DELIVER_REPLY.name, SEND_INTERVENTION.name)),  # type: ignore[attr-defined]
        )
    )
    now, messages = utcnow(), set(queued)
    for job in pending.scalars().all():
        if job.payload.get("message_id") in messages or (
            job.payload.get("intervention_id") in demo_interventions
        ):
            job.status, job.finished_at, job.last_error = "done", now, "demo history: not sent"
    await session.flush()
    return len(queued)


async def _told_already(session: AsyncSession, customers: set[int]) -> None:
    """The demo's customers wrote hours or days ago: a wait notice now would answer nobody
    who just wrote, so each waiting demo conversation counts as told."""
    now = utcnow()
    for part in chunks(sorted(customers)):
        waiting = await session.execute(
            select(Conversation.id).where(  # type: ignore[call-overload]
                Conversation.customer_id.in_(part),  # type: ignore[attr-defined]
                Conversation.status.in_(("open", "pending")),  # type: ignore[attr-defined]
                Conversation.assignee_id.is_(None),  # type: ignore[union-attr]
            )
        )
        for conversation_id in waiting.scalars().all():
            wait = await session.get(RoutingWait, conversation_id)
            if wait is None:
                wait = RoutingWait(conversation_id=conversation_id, since=now, reason="demo")
                session.add(wait)
            wait.notified_at = wait.notified_at or now


async def _demo_interventions(session: AsyncSession, customers: set[int]) -> set[int]:
    """Demo interventions a rule set to "send" scheduled: cancelled, left for an agent."""
    found: set[int] = set()
    for part in chunks(sorted(customers)):
        rows = await session.execute(
            select(Intervention).where(
                Intervention.customer_id.in_(part),  # type: ignore[attr-defined]
                Intervention.send_status == "scheduled",
            )
        )
        for row in rows.scalars().all():
            row.send_status, row.send_note = "cancelled", "demo data: never sent"
            found.add(int(row.id))  # type: ignore[arg-type]
    return found


# --- the CRM: programs, and a few hundred students' histories ----------------------------------

PROGRAMS = [  # code, name, category, price, instructor, level, next
    ("soul-1", "Inner Compass", "soul", 120, "Maya Rao", 1, "soul-2"),
    ("soul-2", "Soul Path Mastery", "soul", 290, "Maya Rao", 2, None),
    ("mind-1", "Mindful Mornings", "mind", 99, "Dr. Hana Sato", 1, "mind-2"),
    ("mind-2", "Mindful Mastery", "mind", 249, "Dr. Hana Sato", 2, None),
    ("body-1", "Strong Foundations", "body", 79, "Tom Becker", 1, "body-2"),
    ("body-2", "Body Wisdom", "body", 199, "Tom Becker", 2, None),
    ("rel-1", "Heart to Heart", "relationships", 149, "Elena Ruiz", 1, "rel-2"),
    ("rel-2", "Conscious Couples", "relationships", 320, "Elena Ruiz", 2, None),
]
MILESTONES = [
    "30 days in a row",
    "first silent retreat",
    "ran a 5k",
    "first month of journaling",
    "slept 8 hours a week straight",
    "first difficult conversation handled calmly",
]
# (share, persona): who the demo's students are; each persona writes its own history.
PERSONAS = [
    (0.10, "browser"),
    (0.22, "steady"),
    (0.14, "finisher"),
    (0.22, "lapsing"),
    (0.08, "struggling"),
    (0.12, "transformed"),
    (0.07, "advocate"),
    (0.05, "new"),
]


async def _demo_programs(session: AsyncSession) -> dict[str, int]:
    have = await programs.programs_by_code(session)
    for code, name, category, price, instructor, level, _ in PROGRAMS:
        if code not in have:
            have[code] = await programs.create_program(
                session,
                code=code,
                name=name,
                category=category,
                price=price,
                instructor=instructor,
                level=level,
            )
    for code, *_, nxt in PROGRAMS:
        if nxt and have[code].next_program_id is None:
            have[code].next_program_id = have[nxt].id
    await session.flush()
    return {code: p.id for code, p in have.items()}  # type: ignore[misc]


def _history(rng: random.Random, persona: str, code: str, now: datetime) -> list[dict[str, Any]]:
    """One student's events: (type, days ago, extra fields)."""
    h: list[tuple[str, float, dict[str, Any]]] = []
    price = next(p[3] for p in PROGRAMS if p[0] == code)
    start = rng.uniform(20, 80)
    if persona == "browser":
        h += [
            ("lesson_completed", rng.uniform(1, 30), {"program": code, "lesson": "intro"}),
            ("community_post", rng.uniform(1, 20), {}),
        ]
        return _dated(h, now)
    h.append(("purchase", start, {"program": code, "amount": str(price), "currency": "USD"}))
    if persona == "new":  # bought recently; some have not started a week later
        return _dated([("purchase", rng.uniform(0.5, 12), h[0][2])], now)
    last = {
        "steady": 0.5,
        "finisher": 0.5,
        "transformed": 3,
        "advocate": 5,
        "lapsing": rng.uniform(8, 25),
        "struggling": rng.uniform(16, 28),
    }[persona]
    days = sorted({round(rng.uniform(last, start - 1), 1) for _ in range(rng.randint(6, 16))})
    done = persona in ("finisher", "transformed", "advocate")
    for i, d in enumerate(sorted(days, reverse=True)):
        progress = (
            min(100, round(100 * (i + 1) / len(days))) if done else round(70 * (i + 1) / len(days))
        )
        h.append(
            (
                "course_progress",
                d,
                {"program": code, "progress": progress, "satisfaction": rng.choice((None, 4, 5))},
            )
        )
    if persona in ("steady", "finisher"):
        h += [("lesson_completed", rng.uniform(0.2, 6), {"program": code}) for _ in range(6)]
    if persona == "struggling" or rng.random() < 0.1:
        h += [
            ("support_ticket", rng.uniform(1, 25), {"ticket_id": f"T{rng.randrange(10**6)}"})
            for _ in range(3)
        ]
        h.append(("live_call_attended", rng.uniform(1, 20), {"program": code, "attended": False}))
    if persona in ("transformed", "advocate"):
        h.append(
            (
                "milestone_reported",
                rng.uniform(0.5, 12),
                {"program": code, "milestone": rng.choice(MILESTONES)},
            )
        )
    if persona == "advocate":
        h.append(
            (
                "referral",
                rng.uniform(0.5, 4),
                {"referred_email": f"friend{rng.randrange(10**5)}@example.com"},
            )
        )
    if rng.random() < 0.05:
        h.append(("refund", rng.uniform(0.5, start - 1), {"program": code, "amount": str(price)}))
    return _dated(h, now)


def _dated(h: list[tuple[str, float, dict[str, Any]]], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "type": t,
            "occurred_at": (now - timedelta(days=d)).isoformat(),
            **{k: v for k, v in extra.items() if v is not None},
        }
        for t, d, extra in h
    ]


async def seed_crm(session: AsyncSession, rng: random.Random) -> str:
    """Programs, then for every demo customer a persona and the events it implies, fed
    through the events API's own ingest: journeys, enrollments, scores and interventions
    follow as they would in production."""
    await _demo_programs(session)
    ids = await _demo_customers(session)
    now = utcnow()
    batch: list[dict[str, Any]] = []
    accepted = 0
    for cid in ids:
        roll, persona = rng.random(), "new"
        for share, name in PERSONAS:
            if roll < share:
                persona = name
                break
            roll -= share
        code = rng.choice(PROGRAMS[::2])[0]
        customer = await session.get(Customer, cid)
        if customer is not None:
            customer.preferred_channel = "api" if rng.random() < 0.7 else None
            customer.interests = sorted(
                {code.split("-")[0], rng.choice(("sleep", "focus", "calm", "energy"))}
            )
        for n, e in enumerate(_history(rng, persona, code, now)):
            batch.append({**e, "idempotency_key": f"demo-{cid}-{n}", "customer": {"id": cid}})
        if len(batch) >= 900:
            accepted += (await events.ingest(session, batch, now=now)).accepted
            batch = []
    if batch:
        accepted += (await events.ingest(session, batch, now=now)).accepted
    await interventions.evaluate(session, now=now)  # the scheduler's pass, once now
    opened = (await session.execute(select(func.count()).select_from(Intervention))).scalar_one()
    return f"CRM: {len(ids)} students, {accepted} activity events, {opened} interventions"
