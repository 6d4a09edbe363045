"""One intake for every channel: what a provider sent, stored before the provider hears 200.

A channel's routes verify and parse a request into items: new messages (with any consent
change they carry, e.g. SMS STOP), edits of earlier messages, and status updates of our
replies. ``receive`` stores them all and returns only once they are committed; a failed
commit raises ``CommitFailed``, which the web layer answers with 503 and ``Retry-After``
(never 200: nothing of it is known to be on disk, and a provider retry of what was stored
after all is a replay, a no-op).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from crm_core.identity import set_opt_out
from heliograph import jobs
from heliograph.db import CommitFailed, get_db
from inbox.edits import InboundEdit, apply_edit
from inbox.ingest import AcceptResult, InboundMessage, accept_in
from inbox.outbox import record_status

__all__ = ["CommitFailed", "IntakeOutcome", "StatusUpdate", "receive"]


@dataclass(frozen=True)
class StatusUpdate:
    """A provider saying what became of a message we sent."""

    channel: str
    external_id: str
    status: str  # sent, delivered, read, failed
    error: str | None = None
    recipient_opted_out: str | None = None  # the recipient's external id, when the cause is STOP


Item = InboundMessage | InboundEdit | StatusUpdate


@dataclass
class IntakeOutcome:
    accepted: list[AcceptResult] = field(default_factory=list)
    edited: list[int] = field(default_factory=list)
    ignored: int = 0  # edits of messages that never reached us, events deliberately skipped
    statuses_applied: int = 0
    unknown_statuses: list[str] = field(default_factory=list)  # ids we never sent

    @property
    def stored(self) -> int:
        return sum(not r.duplicate for r in self.accepted)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicate for r in self.accepted)


async def receive(items: Sequence[Item], *, ignored: int = 0) -> IntakeOutcome:
    """Store every item; return once all of it is committed.

    A message's consent change (``InboundMessage.consent``) is committed with the message,
    so a stored STOP is always an honoured STOP; a replayed message changes nothing (an old
    STOP replayed after a newer START must not opt the customer out again).
    """
    # TRANSITION (#15): one transaction per message; the group commit takes this over.
    outcome = IntakeOutcome(ignored=ignored)
    db = get_db()
    for item in items:
        if isinstance(item, InboundEdit):
            edited = await apply_edit(
                db, item.channel, item.provider_message_id, item.text, item.edited_at
            )
            if edited is None:
                outcome.ignored += 1
            else:
                outcome.edited.append(edited)
        elif isinstance(item, InboundMessage):
            async with db.session() as session:
                result = await accept_in(session, item)
                if item.consent is not None and not result.duplicate:
                    await set_opt_out(session, item.channel, item.sender.external_id, item.consent)
                await session.commit()
            outcome.accepted.append(result)
    updates = [item for item in items if isinstance(item, StatusUpdate)]
    if updates:
        async with db.session() as session:
            for update in updates:
                error = update.error[:500] if update.error else None  # the column's size
                if await record_status(
                    session, update.channel, update.external_id, update.status, error
                ):
                    outcome.statuses_applied += 1
                else:
                    outcome.unknown_statuses.append(update.external_id)
                if update.recipient_opted_out:
                    await set_opt_out(session, update.channel, update.recipient_opted_out, True)
            await session.commit()
    if outcome.stored:
        jobs.wake_workers()
    return outcome
