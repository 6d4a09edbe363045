"""The CRM's events and job kinds, each declared once: a name and its payload model.

The models keep the JSON stored in ``job.payload`` as it always was (field for field), so
jobs queued by an earlier version still run.
"""

from __future__ import annotations

from heliograph import jobs


class InterventionRef(jobs.Payload):
    """An intervention, by id (``intervention.send``)."""

    intervention_id: int


class InterventionOpened(InterventionRef):
    """``intervention.opened``: what a chat surface shows (who, why, what to say, whose
    it is, and when it goes); see ``crm_core.interventions.opened_payload``."""

    customer_id: int
    customer_name: str | None
    customer_timezone: str | None
    customer_language: str | None
    journey_stage: str | None
    rule: str
    title: str | None
    reason: str
    suggested_message: str
    suggested_program_id: int | None
    owner_id: int | None  # None: the on-shift agent takes it
    auto_send: bool
    send_after: str | None  # ISO 8601, as ``datetime.isoformat`` writes it


class InterventionResolved(InterventionRef):
    """``intervention.resolved``: marked done or dismissed, by whom (or "auto")."""

    state: str
    by: str


class RuleFailed(jobs.Payload):
    """``intervention.rule_failed``: a rule was skipped this pass, and why."""

    rule: str
    title: str
    reason: str
    at: str  # ISO 8601, when the pass noticed it


INTERVENTION_OPENED = jobs.Event("intervention.opened", InterventionOpened)
INTERVENTION_RESOLVED = jobs.Event("intervention.resolved", InterventionResolved)
INTERVENTION_RULE_FAILED = jobs.Event("intervention.rule_failed", RuleFailed)

# Enqueued here for rules that send on their own; run by inbox/interventions.py.
SEND_INTERVENTION = jobs.JobKind("intervention.send", InterventionRef)
