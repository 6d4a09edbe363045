"""A follow-the-sun team for handoff tests: Tokyo hands to London at 09:00 UTC."""

from __future__ import annotations

from sqlalchemy import select

from handoff.models import Handoff
from heliograph.db import Database
from inbox.conversations import add_note, reply
from tests.utils.routing_world import customer_writes, give, utc, weekdays

AIKO = {
    "name": "Aiko Tanaka",
    "timezone": "Asia/Tokyo",
    "hours": weekdays(["09:00", "18:00"]),  # 00:00-09:00 UTC
    "languages": ("ja", "en"),
}
OLIVER = {
    "name": "Oliver Bennett",
    "timezone": "Europe/London",
    "hours": weekdays(["09:00", "17:00"]),  # 09:00-17:00 UTC in November
    "languages": ("en", "fr"),
}
SAM = {**OLIVER, "name": "Sam Reed"}

# Tuesday 24 November 2026: Aiko's shift ends at 09:00 UTC, Oliver's starts.
BEFORE = utc(2026, 11, 24, 8, 30)
SHIFT_END = utc(2026, 11, 24, 9, 0)
AFTER = utc(2026, 11, 24, 9, 1)


async def conversation_of(
    database: Database, member_id: int, n: int = 1, *, with_reply: bool = True
) -> int:
    """A customer in São Paulo, an answered question, an unanswered one and a note."""
    first = await customer_writes(
        database,
        f"c{n}-m1",
        f"cust-{n}",
        "hello, I ordered a lamp",
        name=f"Ken Sato {n}",
        timezone="America/Sao_Paulo",
        language="en",
    )
    await give(database, first.conversation_id, member_id, BEFORE)
    if with_reply:
        async with database.session() as session:
            await reply(session, first.conversation_id, "Hi Ken, let me check.", member_id)
            await add_note(session, first.conversation_id, "carrier ticket #42 filed", member_id)
            await session.commit()
        await customer_writes(database, f"c{n}-m2", f"cust-{n}", "It still has not arrived!")
    return first.conversation_id


async def handoffs(database: Database, conversation_id: int | None = None) -> list[Handoff]:
    async with database.read_session() as session:
        stmt = select(Handoff).order_by(Handoff.id)  # type: ignore[arg-type]
        if conversation_id is not None:
            stmt = stmt.where(Handoff.conversation_id == conversation_id)
        return list((await session.execute(stmt)).scalars().all())
