"""The audit log: who did what to which record (``heliograph.models.AuditEvent``).

Every package writes its audit events through ``record`` and reads them through
``events_of``, so the table has one owner (issue #15). An event is written in the
caller's transaction: it is kept exactly when what it records is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.models import AuditEvent


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: int | None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add an audit event to ``session`` (flushed and committed with the caller's work).
    ``at`` defaults to now; ``subject_id`` must be set by the time the session flushes."""
    event = AuditEvent(
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,  # type: ignore[arg-type]
        details=details if details is not None else {},
    )
    if at is not None:
        event.at = at
    session.add(event)
    return event


async def events_of(
    session: AsyncSession, subject_type: str, subject_id: int, *, before: datetime | None = None
) -> list[AuditEvent]:
    """The audit events about one record (e.g. ``"customer"``, 7), those before ``before``
    when it is given; in no particular order."""
    when = AuditEvent.at < before if before is not None else AuditEvent.at.is_not(None)  # type: ignore[attr-defined, operator]
    rows = await session.execute(
        select(AuditEvent).where(
            AuditEvent.subject_type == subject_type,  # type: ignore[arg-type]
            AuditEvent.subject_id == subject_id,  # type: ignore[arg-type]
            when,  # type: ignore[arg-type]
        )
    )
    return list(rows.scalars().all())
