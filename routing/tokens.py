"""API tokens: issued to a member, listed for admins, revoked, expiring, checked per request.

A token is ``hg_`` and 256 random bits; only its SHA-256 is stored (so no KDF is needed),
and the secret is shown once. Every issue and revocation is audited. A request's token is
refused with the reason (unknown, revoked, expired, or its member deactivated), so a
client can tell its operator what to do.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import audit
from heliograph.db import CommitFailed, get_db, utcnow
from routing.models import ApiToken, TeamMember

log = logging.getLogger(__name__)

TOKEN_PREFIX = "hg_"
MAX_TOKEN_DAYS = 3650
# ``last_used_at`` is written at most this often per token: a write on every request
# would make every read a write.
TOKEN_USE_RESOLUTION = timedelta(seconds=60)


class TokenNotFound(LookupError):
    """No token with that id (or that secret)."""


class TokenRefused(Exception):
    """The bearer token lets nobody in; the message says why (the 401's reason)."""


class AccessError(ValueError):
    """A token cannot be issued as asked; the message says why."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _when(at: datetime) -> str:
    return f"{_aware(at):%Y-%m-%d %H:%M} UTC"


def _audit_token(session: AsyncSession, token: ApiToken, action: str, actor: str) -> None:
    details = {"member_id": token.member_id, "label": token.label}
    audit.record(
        session,
        actor=actor,
        action=action,
        subject_type="api_token",
        subject_id=token.id,
        details=details,
    )


async def issue_token(
    session: AsyncSession,
    member: TeamMember,
    label: str = "",
    *,
    expires_in_days: int | None = None,
    actor: str = "cli",
) -> tuple[ApiToken, str]:
    """A new bearer token for an active member: the row and the secret (shown once;
    only its SHA-256 is stored). Audited."""
    if not member.active:
        raise AccessError(f"{member.email} is deactivated; activate them before a token")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise AccessError(f"a token lives 1 to {MAX_TOKEN_DAYS} days, not {expires_in_days}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(days=expires_in_days) if expires_in_days else None
    token = ApiToken(
        member_id=member.id,  # type: ignore[arg-type]
        token_hash=_hash(secret),
        label=label,
        created_at=now,
        expires_at=expires,
    )
    session.add(token)
    await session.flush()
    _audit_token(session, token, "token.created", actor)
    await session.flush()
    return token, secret


async def list_tokens(
    session: AsyncSession, member_id: int | None = None
) -> list[tuple[ApiToken, TeamMember]]:
    """Every token (or one member's) with its member, oldest first; never the secret."""
    stmt = select(ApiToken, TeamMember).join(TeamMember, ApiToken.member_id == TeamMember.id)  # type: ignore[arg-type]
    if member_id is not None:
        stmt = stmt.where(ApiToken.member_id == member_id)  # type: ignore[arg-type]
    rows = await session.execute(stmt.order_by(ApiToken.id))  # type: ignore[arg-type]
    return [(token, member) for token, member in rows.all()]


async def find_token(session: AsyncSession, ref: str | int) -> ApiToken:
    """A token by its id, or by the secret itself (``hg_...``)."""
    text = str(ref).strip()
    if text.startswith(TOKEN_PREFIX):
        stmt = select(ApiToken).where(ApiToken.token_hash == _hash(text))  # type: ignore[arg-type]
        token = (await session.execute(stmt)).scalar_one_or_none()
    elif text.isdigit() and 0 < int(text) < 2**31:
        token = await session.get(ApiToken, int(text))
    else:
        raise TokenNotFound(f"{text[:20]!r} is neither a token id nor a token ({TOKEN_PREFIX}...)")
    if token is None:
        shown = f"token {text}" if text.isdigit() else "that token"
        raise TokenNotFound(f"{shown} does not exist")
    return token


async def revoke_token(session: AsyncSession, ref: str | int, actor: str = "cli") -> bool:
    """Revoke a token (by id or secret) at once; False when it was revoked already."""
    token = await find_token(session, ref)
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    _audit_token(session, token, "token.revoked", actor)
    await session.flush()
    return True


async def check_token(
    session: AsyncSession, secret: str, now: datetime | None = None
) -> tuple[TeamMember, ApiToken]:
    """The active member a bearer token belongs to, and the token; ``TokenRefused``
    says why not (unknown, revoked, expired, or its member deactivated)."""
    now = now or utcnow()
    row = (
        await session.execute(
            select(ApiToken, TeamMember)
            .join(TeamMember, ApiToken.member_id == TeamMember.id)  # type: ignore[arg-type]
            .where(ApiToken.token_hash == _hash(secret))  # type: ignore[arg-type]
        )
    ).first()
    if row is None:
        raise TokenRefused("the token is unknown")
    token, member = row
    if token.revoked_at is not None:
        raise TokenRefused(f"the token was revoked on {_when(token.revoked_at)}")
    if token.expires_at is not None and _aware(token.expires_at) <= now:
        raise TokenRefused(f"the token expired on {_when(token.expires_at)}")
    if not member.active:
        raise TokenRefused(f"the token's team member ({member.email}) is deactivated")
    return member, token


async def authenticate(session: AsyncSession, token: str) -> TeamMember | None:
    """The active member behind a valid token, or None."""
    try:
        member, _ = await check_token(session, token)
    except TokenRefused:
        return None
    return member


async def note_token_use(token: ApiToken, now: datetime | None = None) -> None:
    """Keep ``last_used_at`` to within ``TOKEN_USE_RESOLUTION``: nothing is written while
    the stored time is that recent, so most requests read only. A failed write costs the
    request nothing (it is bookkeeping)."""
    now = now or utcnow()
    last = token.last_used_at
    if last is not None and now - _aware(last) < TOKEN_USE_RESOLUTION:
        return
    stale = now - TOKEN_USE_RESOLUTION
    stmt = (
        update(ApiToken)
        .where(
            ApiToken.id == token.id,  # type: ignore[arg-type]
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale),  # type: ignore[union-attr, operator, arg-type]
        )
        .values(last_used_at=now)
    )
    try:
        await get_db().run_transaction(lambda conn: conn.execute(stmt), priority=True)
    except (SQLAlchemyError, CommitFailed) as exc:
        log.warning("could not note the use of token %s: %s", token.id, exc)
