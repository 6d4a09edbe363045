"""Routing's part of GDPR erasure (a ``crm_core.gdpr`` hook; the export's ``assignments``
section is web.api.crm's hook).

An assignment's reason can quote a person's words (a handoff note, a manual reason), so
it is blanked; who had the conversation and when stay (the team's numbers and "their
previous agent" are made of them). The ``conversation.assigned`` and ``rerouted`` jobs
name the conversation and go with the inbox's part.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import gdpr
from inbox.gdpr import ERASED_TEXT
from routing.models import Assignment


async def erase_assignments(session: AsyncSession, customer_ids: list[int]) -> dict[str, int]:
    theirs = Assignment.customer_id.in_(customer_ids)  # type: ignore[attr-defined]
    jobs = await gdpr.drop_jobs(
        session,
        {"assignment_id": select(Assignment.id).where(theirs)},  # type: ignore[call-overload]
    )
    rows = await session.execute(
        update(Assignment).where(theirs).values(reason=ERASED_TEXT, reason_text=None)
    )
    return {"assignment": int(rows.rowcount), "job": jobs}  # type: ignore[attr-defined]


gdpr.erase_hooks.append(erase_assignments)
