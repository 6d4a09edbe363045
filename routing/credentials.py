"""Passwords (Argon2) and invite links of the web app (issue #16).

Only Argon2 hashes of passwords and SHA-256 digests of invite tokens are stored. A
password change ends every web session of the member (``session_version`` grows).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from heliograph.db import utcnow
from routing.models import MemberInvite, TeamMember

INVITE_DAYS = 7
MIN_PASSWORD = 10
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """A hash to verify against when no member has the email, so an unknown address takes
    as long as a wrong password. Made at a process's first sign-in with an unknown address,
    not at import (~0.2 s of CPU that every process start paid, CLI commands included)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class PasswordRefused(ValueError):
    """The new password is not acceptable (too short)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _norm(email: str) -> str:
    return email.strip().lower()


async def member_by_email(session: AsyncSession, email: str) -> TeamMember | None:
    found = await session.execute(
        select(TeamMember).where(TeamMember.email == _norm(email))  # type: ignore[arg-type]
    )
    return found.scalars().first()


async def set_password(session: AsyncSession, member: TeamMember, password: str) -> None:
    """Store a new password (the caller commits); a change ends every web session of the
    member (their ``session_version`` grows)."""
    if len(password) < MIN_PASSWORD:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD} characters")
    if member.password_hash is not None:  # a change, not the first password
        member.session_version = (member.session_version or 0) + 1
    member.password_hash = _hasher.hash(password)
    member.updated_at = utcnow()
    session.add(member)


async def authenticate(session: AsyncSession, email: str, password: str) -> TeamMember | None:
    """The active member with this email and password, else None (same for every failure).
    A hash made with older parameters is rehashed (the caller commits)."""
    member = await member_by_email(session, email)
    stored = member.password_hash if member is not None else None
    try:
        _hasher.verify(stored or _dummy(), password)
    except (VerificationError, InvalidHashError):
        return None
    if member is None or stored is None or not member.active:
        return None
    if _hasher.check_needs_rehash(stored):
        member.password_hash = _hasher.hash(password)
        session.add(member)
    return member


async def create_invite(
    session: AsyncSession, member: TeamMember, created_by: int | None = None
) -> str:
    """A new invite token for ``member`` (the caller commits and builds the URL)."""
    token = secrets.token_urlsafe(32)
    session.add(
        MemberInvite(
            member_id=member.id,  # type: ignore[arg-type]
            token_hash=_digest(token),
            created_by=created_by,
            expires_at=utcnow() + timedelta(days=INVITE_DAYS),
        )
    )
    return token


async def invite_member(session: AsyncSession, token: str) -> TeamMember | None:
    """The active member an unused, unexpired invite is for; else None."""
    invite = await _invite(session, token)
    if invite is None:
        return None
    member = await session.get(TeamMember, invite.member_id)
    return member if member is not None and member.active else None


async def _invite(session: AsyncSession, token: str) -> MemberInvite | None:
    found = await session.execute(
        select(MemberInvite).where(MemberInvite.token_hash == _digest(token))  # type: ignore[arg-type]
    )
    invite = found.scalars().first()
    if invite is None or invite.used_at is not None:
        return None
    expires = invite.expires_at
    now = utcnow()
    if expires.tzinfo is None:
        now = now.replace(tzinfo=None)
    return invite if expires > now else None


async def accept_invite(session: AsyncSession, token: str, password: str) -> TeamMember | None:
    """Use the invite once: set the member's password (the caller commits)."""
    invite = await _invite(session, token)
    if invite is None:
        return None
    member = await session.get(TeamMember, invite.member_id)
    if member is None or not member.active:
        return None
    await set_password(session, member, password)
    invite.used_at = utcnow()
    session.add(invite)
    return member


async def pending_invites(session: AsyncSession) -> list[tuple[MemberInvite, TeamMember]]:
    found = await session.execute(
        select(MemberInvite, TeamMember)
        .join(TeamMember, TeamMember.id == MemberInvite.member_id)  # type: ignore[arg-type]
        .where(MemberInvite.used_at.is_(None))  # type: ignore[union-attr]
        .order_by(MemberInvite.created_at.desc())  # type: ignore[attr-defined]
    )
    return [(i, m) for i, m in found.all()]


async def set_preferences(
    session: AsyncSession, member: TeamMember, *, language: str | None, theme: str
) -> None:
    member.ui_language = language
    member.ui_theme = theme
    session.add(member)
