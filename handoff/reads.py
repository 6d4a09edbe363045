"""handoff's tables as other packages read them: a handoff record by its id (the agents'
surfaces show its context package)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from handoff.models import Handoff


async def handoff(session: AsyncSession, handoff_id: int | None) -> Handoff | None:
    """The handoff with this id (None: no id, or no such handoff)."""
    return await session.get(Handoff, handoff_id) if handoff_id else None
