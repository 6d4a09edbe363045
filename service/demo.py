"""Demo data for ``make run``: the five-region team and a few hundred customers, reproducibly.

The demo's conversations are history: its replies and wait notices are stored as sent
when written, and nothing is left queued for a provider (``_as_history``), so seeding a
database whose channels point at real providers writes to nobody.

Besides the few hundred API conversations, a handful of showcase conversations (``SHOWCASE``)
arrive on WhatsApp, Telegram, email and SMS in Portuguese, Russian, Japanese, Spanish, Malay
and English, claimed by Oliver (a lead who reads English): one of them is a voice note with
its transcript, stored as the transcription job stores one (the demo runs no whisper). Their
English translations are put in the translation cache under the provider the demo uses
(``libre``, the sandbox's LibreTranslate fake, which knows only a few phrases), so that the
workers of ``make run`` translate them as a real provider would. These are what the README's
screenshots show (docs/screenshots.py).

Signing in: each demo team member who has no password yet gets the documented demo password
``<the email's local part>-demo-pass`` (``demo_password``), e.g. ``oliver-demo-pass``;
``heliograph demo`` prints the accounts whose demo password works (``demo_accounts``), so a
database whose members chose their own passwords, or that holds no demo team, prints none."""

from __future__ import annotations

import hashlib
import io
import random
import wave
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, update
from sqlmodel import col
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
from inbox.ingest import AcceptResult, InboundAttachment, InboundMessage, store_batch
from inbox.media import media_dir
from inbox.models import Attachment, Conversation, Message
from inbox.translation import VOICE_MARK
from routing import assignment, credentials
from routing.models import RoutingWait, TeamMember
from routing.team import import_team
from transcription import cache

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
    # First, so that the workers of `make run` translate these first (jobs run oldest first).
    shown = await seed_showcase(session)
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
    crm = await seed_crm(session, rng)  # its pass over the rules covers the showcase too
    settled = await _as_history(session)
    passwords = await _demo_passwords(session)
    return (
        f"demo loaded: team {created} created / {updated} updated; {opened} conversations, "
        f"{replied} answered, {resolved} resolved; {crm}; {shown}; {settled} outbound "
        f"messages kept as history, none queued; {passwords} demo passwords set"
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
    customers = set(await _demo_customers(session)) | set(await _showcase_customers(session))
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


# --- the showcase: a few conversations on every kind of channel, in several languages -------

SHOWCASE_AGENT = "oliver@heliograph.example"  # a lead who answers customers and reads English
DEMO_TRANSLATION_PROVIDER = "libre"  # what `heliograph demo` sets (the sandbox's fake)


@dataclass(frozen=True)
class Showcase:
    channel: str
    external_id: str
    name: str
    language: str
    timezone: str
    text: str  # what the customer wrote (or, with ``voice``, said)
    english: str  # its translation ("" for English)
    minutes_ago: int
    persona: str  # the CRM history the customer gets (``_history``)
    program: str
    voice: bool = False
    subject: str | None = None
    reply: str | None = None  # Oliver's answer, kept as history
    milestone: str | None = None  # reported yesterday (an intervention to celebrate it)


SHOWCASE = [
    Showcase(
        "whatsapp",
        "+5511987650101",
        "Beatriz Souza",
        "pt",
        "America/Sao_Paulo",
        "Olá! Cheguei a um marco importante no Inner Compass e estou muito feliz. Qual curso "
        "vocês recomendam agora?",
        "Hi! I reached an important milestone in Inner Compass and I'm very happy. Which "
        "course do you recommend now?",
        4,
        "transformed",
        "soul-1",
        voice=True,
        milestone="30 days in a row",
    ),
    Showcase(
        "telegram",
        "5550102",
        "Daria Ivanova",
        "ru",
        "Europe/Moscow",
        "Здравствуйте! После обновления не могу войти в приложение.",
        "Hello! I can't log in to the app since the update.",
        11,
        "steady",
        "mind-1",
    ),
    Showcase(
        "email",
        "kenji.sato@example.jp",
        "Kenji Sato",
        "ja",
        "Asia/Tokyo",
        "家族プランはありますか？子どもと一緒に受講したいです。",  # noqa: RUF001
        "Do you have a family plan? I would like to take the course with my children.",
        26,
        "browser",
        "body-1",
        subject="家族プランについて",
    ),
    Showcase(
        "sms",
        "+525512340104",
        "Mateo López",
        "es",
        "America/Mexico_City",
        "Mi pago falló. ¿Lo intento otra vez?",
        "My payment failed. Should I try again?",
        38,
        "new",
        "rel-1",
    ),
    Showcase(
        "whatsapp",
        "+60123450105",
        "Nur Aisyah Hassan",
        "ms",
        "Asia/Kuala_Lumpur",
        "Selamat pagi, bilakah kelas langsung esok akan bermula?",
        "Good morning, when will tomorrow's live class start?",
        55,
        "struggling",
        "body-1",
    ),
    Showcase(
        "email",
        "emma.clarke@example.co.uk",
        "Emma Clarke",
        "en",
        "Europe/London",
        "Can I give Mindful Mornings to a friend as a gift? She loved hearing about it.",
        "",
        90,
        "advocate",
        "mind-1",
        subject="Mindful Mornings as a gift",
        reply="What a lovely idea, Emma! You can buy a gift code here: "
        "https://heliograph.example/gift",
    ),
]


def _voice_note_wav(seconds: float = 6.0, rate: int = 8000) -> bytes:
    """A short, quiet WAV file standing in for the customer's voice note."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


def _store_media(data: bytes) -> str:
    """Where ``inbox.media`` keeps a fetched file (by its SHA-256), written the same way."""
    digest = hashlib.sha256(data).hexdigest()
    path = media_dir() / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return str(path)


async def _showcase_customers(session: AsyncSession) -> list[int]:
    found: list[int] = []
    for show in SHOWCASE:
        row = await session.execute(
            select(col(Identity.customer_id)).where(
                col(Identity.channel) == show.channel,
                col(Identity.external_id) == show.external_id,
            )
        )
        found.extend(row.scalars().all())
    return found


async def seed_showcase(session: AsyncSession) -> str:
    """The showcase conversations, claimed by ``SHOWCASE_AGENT``, with their customers' CRM
    histories; their translations go into the translation cache (see the module's doc).
    ``seed_crm``'s pass over the intervention rules opens their interventions."""
    agent = await credentials.member_by_email(session, SHOWCASE_AGENT)
    assert agent is not None, "the demo team has no showcase agent"
    await _demo_programs(session)
    now = utcnow()
    batch: list[dict[str, Any]] = []
    stored = 0
    # Oldest first, so that the inbox lists them newest first, as they would have arrived.
    for n, show in sorted(enumerate(SHOWCASE), key=lambda s: -s[1].minutes_ago):
        words = VOICE_MARK + show.text if show.voice else show.text
        sent = now - timedelta(minutes=show.minutes_ago)
        result = await _store(
            session,
            InboundMessage(
                channel=show.channel,
                provider_message_id=f"demo-showcase-{n}",
                sender=SenderProfile(
                    channel=show.channel,
                    external_id=show.external_id,
                    name=show.name,
                    email=show.external_id if show.channel == "email" else None,
                    phone=show.external_id if show.external_id.startswith("+") else None,
                    language=show.language,
                    timezone=show.timezone,
                ),
                text=words,
                subject=show.subject,
                sent_at=sent,
                attachments=(
                    [InboundAttachment(kind="audio", content_type="audio/wav")]
                    if show.voice
                    else []
                ),
            ),
        )
        if result.duplicate:
            continue  # seeded before
        stored += 1
        conversation = await _arrived(session, result, sent)
        if show.voice:
            await _transcribed(session, result.message_id, show)
        if show.english:
            await cache.store(
                session, DEMO_TRANSLATION_PROVIDER, show.language, "en", show.text, show.english
            )
        await assignment.assign_to(session, result.conversation_id, agent.id, agent)  # type: ignore[arg-type]
        if show.reply:
            answer = await conversations.reply(
                session, result.conversation_id, show.reply, agent.id
            )
            answer.created_at = conversation.last_message_at = sent + timedelta(minutes=6)
            conversation.first_response_at = answer.created_at
        rng = random.Random(f"showcase-{n}")
        history = _history(rng, show.persona, show.program, now)
        if show.milestone:
            extra = {"program": show.program, "milestone": show.milestone}
            history += _dated([("milestone_reported", 1, extra)], now)
        for k, e in enumerate(history):
            key = f"demo-showcase-{result.customer_id}-{k}"
            batch.append({**e, "idempotency_key": key, "customer": {"id": result.customer_id}})
        customer = await session.get(Customer, result.customer_id)
        if customer is not None:
            customer.preferred_channel = show.channel
    if batch:
        await events.ingest(session, batch, now=now)
    return f"showcase: {stored} conversations on {len({s.channel for s in SHOWCASE})} channels"


async def _arrived(session: AsyncSession, result: AcceptResult, sent: datetime) -> Conversation:
    """The message and its conversation dated when the customer sent it (the intake dates
    them when stored), so that the inbox shows how long each customer has waited."""
    message = await session.get(Message, result.message_id)
    conversation = await session.get(Conversation, result.conversation_id)
    assert message is not None and conversation is not None
    message.created_at = conversation.created_at = conversation.last_message_at = sent
    if conversation.waiting_since is not None:
        conversation.waiting_since = sent
    return conversation


async def _transcribed(session: AsyncSession, message_id: int, show: Showcase) -> None:
    """The voice note's file and transcript, as inbox.media and inbox.voice store them."""
    found = await session.execute(
        select(Attachment).where(col(Attachment.message_id) == message_id)
    )
    for attachment in found.scalars().all():
        data = _voice_note_wav()
        attachment.storage_path = _store_media(data)
        attachment.size = len(data)
        attachment.filename = "voice-note.wav"
        attachment.transcript = show.text
        attachment.transcript_language = show.language
        attachment.transcript_status = "ok"


# --- signing in to the web app ----------------------------------------------------------------


def demo_password(email: str) -> str:
    """The documented demo password of a demo team member: ``<local part>-demo-pass``."""
    return f"{email.split('@')[0]}-demo-pass"


def _team_emails() -> list[str]:
    data = yaml.safe_load(TEAM_FILE.read_text(encoding="utf-8"))
    return [str(m["email"]).strip().lower() for m in data["members"]]


async def _demo_passwords(session: AsyncSession) -> int:
    """Demo team members without a password get their demo password; a password someone
    chose is left as it is (and is then not printed by ``demo_accounts``)."""
    done = 0
    for email in _team_emails():
        member = await credentials.member_by_email(session, email)
        if member is not None and member.password_hash is None:
            await credentials.set_password(session, member, demo_password(email))
            done += 1
    return done


@dataclass(frozen=True)
class DemoAccount:
    name: str
    email: str
    role: str
    password: str


async def demo_accounts(session: AsyncSession) -> list[DemoAccount]:
    """The demo team members whose demo password signs them in (none on a database
    without the demo team, or where they changed it)."""
    found: list[DemoAccount] = []
    for email in _team_emails():
        member = await credentials.authenticate(session, email, demo_password(email))
        if member is not None:
            found.append(DemoAccount(member.name, member.email, member.role, demo_password(email)))
    return found


def sign_in_table(url: str, accounts: list[DemoAccount]) -> str:
    """What ``heliograph demo`` prints: where to sign in, and with which account."""
    if not accounts:
        return ""
    rows = [("email", "role", "password"), *((a.email, a.role, a.password) for a in accounts)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"Sign in at {url}/sign-in with a demo account (passwords for demo data only):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
