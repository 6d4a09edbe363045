"""One intake for every channel: what a provider sent, stored before the provider hears 200.

A channel's routes verify and parse a request into items: new messages (with any consent
change they carry, e.g. SMS STOP, or a note that the sender could not be verified), edits
of earlier messages, and status updates of our replies. ``receive`` hands them all to the
ingest writer's group commit (``inbox.ingest_batch``) and returns only once they are
committed.

Guarantees (item by item, whatever the channel):
- **Stored before answered.** ``receive`` returns only after the commit that holds every
  item; a failed commit raises ``CommitFailed``, which the web layer answers with 503 and
  ``Retry-After`` (never 200: nothing of it is known to be on disk, and a provider retry
  of what was stored after all is a replay).
- **One transaction with the message.** A message's consent change
  (``InboundMessage.consent``) and its unverified-sender mark and note
  (``InboundMessage.unverified_note``) are committed with the message, so a stored STOP
  is always an honoured STOP; edits and status updates share that batch transaction.
- **Replays change nothing.** A message stored before (or earlier in the same call) is
  reported as a duplicate with the stored row; its consent keyword and note are not
  applied again (an old STOP replayed after a newer START must not opt the customer out
  again); an edit to the text a message already has changes nothing.
- **Order.** Within a batch, messages are stored first, then edits (an edit of a message
  earlier in the same call finds it), then status updates, each kind in the order given.
- **One bad item fails alone.** When a batch fails before its commit, each item is
  stored again as a batch of its own (retried on a unique clash with a concurrent
  writer): the others are stored, and ``receive`` raises the first item's error only
  after all of them have settled.
- **Cancellation does not withdraw.** A caller that is cancelled or times out while
  waiting leaves its items in the batch; they are committed all the same.
- **Time stamps.** A new message keeps when its request reached us (``received_at``,
  taken here unless the route set it earlier) and when its batch was written, just before
  the commit (``committed_at``); see "Time stamps on the path" in docs/operations.md.
- **Group commit.** Concurrent calls (all channels, SMS and WhatsApp included) share one
  transaction: a burst of N items costs about one commit, a lone item is written at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from heliograph.db import CommitFailed, get_db, utcnow
from inbox.edits import InboundEdit
from inbox.ingest import AcceptResult, InboundMessage, Item, StatusUpdate
from inbox.ingest_batch import writer_for

__all__ = [
    "CommitFailed",
    "InboundEdit",
    "InboundMessage",
    "IntakeOutcome",
    "StatusUpdate",
    "receive",
]


@dataclass
class IntakeOutcome:
    accepted: list[AcceptResult] = field(default_factory=list)
    edited: list[int] = field(default_factory=list)
    ignored: int = 0  # edits of messages that never reached us, events deliberately skipped
    statuses_applied: int = 0
    # Ids no reply has yet: kept a day, for the outbox to apply when it writes them.
    unknown_statuses: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(not r.duplicate for r in self.accepted)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicate for r in self.accepted)


async def receive(items: Sequence[Item], *, ignored: int = 0) -> IntakeOutcome:
    """Store every item through the group commit; return once all of it is committed
    (see the module's guarantees). Raises ``CommitFailed`` when the commit failed, or the
    first failed item's error."""
    outcome = IntakeOutcome(ignored=ignored)
    if not items:
        return outcome
    at = utcnow()  # at our door: the message's ``received_at`` (unless the route set it)
    for item in items:
        if isinstance(item, InboundMessage) and item.received_at is None:
            item.received_at = at
    futures = writer_for(get_db()).submit(items)
    # ``wait`` cancels nothing: a cancelled caller leaves its items queued (they are
    # committed regardless).
    await asyncio.wait(futures)
    for item, future in zip(items, futures, strict=True):
        if (error := future.exception()) is not None:
            raise error
        result = future.result()
        if isinstance(item, InboundMessage):
            assert isinstance(result, AcceptResult)
            outcome.accepted.append(result)
        elif isinstance(item, InboundEdit):
            if result is None:
                outcome.ignored += 1
            else:
                outcome.edited.append(result)  # type: ignore[arg-type]
        elif result:
            outcome.statuses_applied += 1
        else:
            outcome.unknown_statuses.append(item.external_id)
    return outcome
