"""Factories for tests (full-stack-fastapi-template's tests/utils habit)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import SenderProfile
from heliograph.db import Database, get_db
from inbox import intake
from inbox.ingest import AcceptResult, InboundMessage
from routing.models import TeamMember
from routing.team import create_token


def inbound(
    message_id: str, sender_id: str = "cust-1", text: str = "hello", channel: str = "api", **kw: str
) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        provider_message_id=message_id,
        sender=SenderProfile(channel=channel, external_id=sender_id, **kw),
        text=text,
    )


async def store(database: Database, msg: InboundMessage) -> AcceptResult:
    """One message through the intake (a batch of one, or part of a concurrent batch)."""
    assert database is get_db(), "the intake stores into the application's database"
    (result,) = (await intake.receive([msg])).accepted
    return result


async def edit(database: Database, channel: str, provider_message_id: str, text: str) -> int | None:
    """A customer's edit through the intake: the message's id, None when it never reached us."""
    assert database is get_db(), "the intake stores into the application's database"
    outcome = await intake.receive([intake.InboundEdit(channel, provider_message_id, text)])
    return outcome.edited[0] if outcome.edited else None


async def receive(
    database: Database, message_id: str, sender_id: str = "cust-1", **kw: str
) -> AcceptResult:
    return await store(database, inbound(message_id, sender_id, **kw))


async def make_member(
    session: AsyncSession, name: str = "Ada Agent", role: str = "agent", **kw: object
) -> TeamMember:
    email = kw.pop("email", f"{name.split()[0].lower()}.{role}@team.example")
    member = TeamMember(name=name, email=str(email), role=role, **kw)  # type: ignore[arg-type]
    session.add(member)
    await session.flush()
    return member


async def member_with_token(
    database: Database, role: str = "agent", name: str = "Ada Agent"
) -> tuple[TeamMember, dict[str, str]]:
    async with database.session() as session:
        member = await make_member(session, name=name, role=role)
        token = await create_token(session, member.email)
        await session.commit()
    return member, {"Authorization": f"Bearer {token}"}
