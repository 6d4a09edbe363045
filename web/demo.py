"""Demo data for ``make run``: the five-region team and a few hundred customers, reproducibly."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import SenderProfile
from heliograph.db import utcnow
from inbox import conversations
from inbox.ingest import InboundMessage, accept_in
from routing.models import TeamMember
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
    created, updated = await import_team(session, TEAM_FILE.read_text(encoding="utf-8"))
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
        result = await accept_in(
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
    return (
        f"demo loaded: team {created} created / {updated} updated; {opened} conversations, "
        f"{replied} answered, {resolved} resolved"
    )
