"""Linking a Telegram chat to a team member with a one-time code.

``POST /api/v1/team-members/me/telegram-link`` issues the code; the member sends
``/link CODE`` to the bot from the chat to link. Only the code's SHA-256 is stored (it is
40 random bits from an unambiguous alphabet; single use and a 15-minute life make guessing
hopeless, and every refused attempt is audited by ``telegram_agents``). A new code cancels
the member's earlier unused ones; linking again from another chat moves the link.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import utcnow
from routing import reads as routing_reads
from routing import team
from routing.models import TeamMember
from surfaces.telegram_models import TelegramLinkCode

LINK_TTL = timedelta(minutes=15)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a screen
CODE_LENGTH = 8


class LinkRefused(Exception):
    """The code does not link anything; the message says what to do."""


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def issue_link_code(session: AsyncSession, member: TeamMember) -> tuple[str, datetime]:
    """A fresh one-time code for ``member``; their earlier unused codes stop working."""
    now = utcnow()
    await session.execute(
        update(TelegramLinkCode)
        .where(TelegramLinkCode.member_id == member.id, TelegramLinkCode.used_at.is_(None))  # type: ignore[union-attr, arg-type]
        .values(used_at=now)
    )
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires = now + LINK_TTL
    row = TelegramLinkCode(member_id=member.id, code_hash=_code_hash(code), expires_at=expires)  # type: ignore[arg-type]
    session.add(row)
    await session.flush()
    return code, expires


async def link_chat(session: AsyncSession, chat_id: str, code: str, now: datetime) -> TeamMember:
    """The member whose valid, unused code this is, now linked to ``chat_id``."""
    row = (
        await session.execute(
            select(TelegramLinkCode).where(TelegramLinkCode.code_hash == _code_hash(code))  # type: ignore[arg-type]
        )
    ).scalar()
    expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or now.tzinfo) if row else None
    if row is None or row.used_at is not None or expires is None or expires <= now:
        raise LinkRefused(
            "That code is not valid: it may be mistyped, used already or older than 15 "
            "minutes. Ask for a new one (POST /api/v1/team-members/me/telegram-link)."
        )
    member = await routing_reads.member(session, row.member_id)
    if member is None or not member.active:
        raise LinkRefused("That code's team member is no longer active.")
    row.used_at, row.used_by_chat = now, chat_id
    # A former member (inactive) may still hold the chat: it is this member's now.
    await team.link_telegram_chat(session, member, chat_id, now)
    await session.flush()
    return member
