"""Handoff's events, each declared once: a name and its payload model.

The models keep the JSON stored in ``job.payload`` as it always was (field for field), so
jobs queued by an earlier version still run.
"""

from __future__ import annotations

from heliograph import jobs


class HandoffCreated(jobs.Payload):
    """``handoff.created``: a conversation changed hands (its row holds the context)."""

    handoff_id: int
    conversation_id: int
    from_member_id: int | None
    to_member_id: int | None  # None: back to the queue
    kind: str
    reason: str


class HandoffEscalated(jobs.Payload):
    """``handoff.escalated``: nobody acknowledged a handoff in time."""

    handoff_id: int
    conversation_id: int
    member_id: int | None  # who did not acknowledge
    waited_s: float
    reason: str


HANDOFF_CREATED = jobs.Event("handoff.created", HandoffCreated)
HANDOFF_ESCALATED = jobs.Event("handoff.escalated", HandoffEscalated)
