"""Handoffs in GDPR export and erasure (``crm_core.gdpr`` hooks).

A handoff's context package is a copy of the customer's name, local time, last messages,
notes and open interventions, and its reason can quote the giver's note: the export
holds them, and erasure blanks both while keeping who handed what to whom and when (the
team's acknowledgement times are made of those). The jobs about a handoff (the
receiver's Telegram or Slack notice, the escalation alert) are deleted with it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import gdpr
from handoff.models import Handoff
from inbox.gdpr import ERASED_TEXT
from inbox.models import Conversation


def _handoffs_of(customer_ids: list[int]) -> Any:
    conversations = select(Conversation.id).where(Conversation.customer_id.in_(customer_ids))  # type: ignore[call-overload, attr-defined]
    return Handoff.conversation_id.in_(conversations)  # type: ignore[attr-defined]


def _ids(customer_ids: list[int]) -> Select[Any]:
    return select(Handoff.id).where(_handoffs_of(customer_ids))  # type: ignore[call-overload]


async def export_handoffs(session: AsyncSession, customer_ids: list[int]) -> dict[str, Any]:
    rows = await session.execute(
        select(Handoff).where(_handoffs_of(customer_ids)).order_by(Handoff.id)  # type: ignore[arg-type]
    )
    return {
        "handoffs": [gdpr.plain(h) for h in rows.scalars()],
        "jobs": await gdpr.jobs_naming(session, {"handoff_id": _ids(customer_ids)}),
    }


async def erase_handoffs(session: AsyncSession, customer_ids: list[int]) -> dict[str, int]:
    jobs = await gdpr.drop_jobs(session, {"handoff_id": _ids(customer_ids)})
    rows = await session.execute(
        update(Handoff)
        .where(_handoffs_of(customer_ids))
        .values(reason=ERASED_TEXT, reason_text=None, context={"erased": True})
    )
    return {"handoff": int(rows.rowcount), "job": jobs}  # type: ignore[attr-defined]


gdpr.export_hooks.append(export_handoffs)
gdpr.erase_hooks.append(erase_handoffs)
