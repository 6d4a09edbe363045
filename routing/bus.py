"""Routing's events and job kinds, declared once: a name and a payload model each.

Events (published in the transaction that made them so):

- ``conversation.assigned``: a conversation changed owner (``member_id`` None: back to the
  queue); one per history row.
- ``conversation.rerouted``: an unanswered assignment moved to someone else.

Job kinds (handlers in ``routing.jobs`` and ``routing.access``):

- ``routing.route`` (listens to ``message.received``): tag, prioritise, assign or queue.
- ``routing.status_changed`` (listens to ``conversation.status_changed``).
- ``routing.drain``: give queued conversations to whoever is free now.
- ``routing.release_member``: a deactivated member's open conversations go back to the queue.
"""

from __future__ import annotations

from heliograph import jobs
from inbox.bus import ConversationStatusChanged, MessageReceived


class ConversationAssigned(jobs.Payload):
    conversation_id: int
    assignment_id: int
    member_id: int | None
    previous_member_id: int | None
    kind: str
    reason: str


class ConversationRerouted(jobs.Payload):
    conversation_id: int
    from_member_id: int
    to_member_id: int
    assignment_id: int | None
    reason: str


class Drain(jobs.Payload):
    reason: str = ""


class ReleaseMember(jobs.Payload):
    member_id: int


CONVERSATION_ASSIGNED = jobs.Event("conversation.assigned", ConversationAssigned)
CONVERSATION_REROUTED = jobs.Event("conversation.rerouted", ConversationRerouted)

ROUTE = jobs.JobKind("routing.route", MessageReceived, jobs.URGENT)
STATUS_CHANGED = jobs.JobKind("routing.status_changed", ConversationStatusChanged, jobs.URGENT)
DRAIN = jobs.JobKind("routing.drain", Drain)
RELEASE_MEMBER = jobs.JobKind("routing.release_member", ReleaseMember)
