"""Time stamps on the path of a message (issue #17): the writes other packages make through
the inbox, and the histograms /metrics reads back.

The ``message`` table belongs to the inbox; routing and the agents' surfaces stamp what
they did with a customer's message through these functions, in their own transaction,
many messages at a time. Each stamp is written once: a job that runs again (a retry, a
replay) keeps the first time, and only inbound messages are stamped (the ids of replies
are passed over, so a caller mirroring a whole thread may pass every id it posted).

The columns and who sets them (docs/operations.md, "Time stamps on the path"):
``received_at`` (inbox.intake), ``committed_at`` (the group commit, inbox.ingest),
``routed_at`` (``mark_routed``: routing's job), ``agent_notified_at``
(``mark_agent_notified``: Slack threads, the Telegram agents' chat), and for replies
``created_at`` (queued) and ``accepted_at`` (inbox.outbox, when the provider accepted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, case, cast, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.bulk import among, is_postgres
from heliograph.db import utcnow
from inbox.models import Message

_MESSAGE = Message.__table__  # type: ignore[attr-defined]
# Upper bounds (seconds) of the histograms' buckets, +Inf implied.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
WINDOW = timedelta(minutes=15)


async def _stamp(
    session: AsyncSession, column: str, ids: Iterable[int | None], at: datetime | None
) -> int:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return 0
    c = _MESSAGE.c
    if is_postgres(session):
        # Lock the rows in id order first (an UPDATE takes them in whatever order its plan
        # reads them): two transactions stamping overlapping messages (routing's batch,
        # a Slack batch's record) then wait for each other instead of deadlocking.
        await session.execute(
            select(c.id).where(among(session, c.id, wanted)).order_by(c.id).with_for_update()
        )
    result = await session.execute(
        update(_MESSAGE)
        .where(among(session, c.id, wanted), c.direction == "in", c[column].is_(None))
        .values({column: at or utcnow()})
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def mark_routed(
    session: AsyncSession, message_ids: Iterable[int | None], at: datetime | None = None
) -> int:
    """Routing decided for the conversations after these inbound messages (assigned, queued,
    or left with its assignee): ``routed_at`` = ``at`` (now by default), in the caller's
    transaction, where not stamped before. How many rows it stamped."""
    return await _stamp(session, "routed_at", message_ids, at)


async def mark_agent_notified(
    session: AsyncSession, message_ids: Iterable[int | None], at: datetime | None = None
) -> int:
    """An agent's surface accepted the posts that show these messages to the agent (the
    provider answered ok): ``agent_notified_at`` = ``at`` (now by default), in the
    caller's transaction, where not stamped before. Replies' ids are passed over."""
    return await _stamp(session, "agent_notified_at", message_ids, at)


# --- /metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per bucket (``BUCKETS``, then +Inf), the sum of the values."""

    buckets: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return self.buckets[-1]


def _seconds(session: AsyncSession, start: Any, end: Any) -> Any:
    """``end - start`` in seconds, to the microsecond, as each engine can compute it."""
    if is_postgres(session):
        return func.extract("epoch", end - start)
    # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (UTC); its date functions round to the
    # millisecond, so whole seconds come from them and the fraction from the text.
    return _whole(end) - _whole(start) + (_fraction(end) - _fraction(start))


def _whole(at: Any) -> Any:
    return cast(func.strftime("%s", func.substr(at, 1, 19)), Integer)


def _fraction(at: Any) -> Any:
    return cast(func.substr(at, 20), Float)


def _aggregates(seconds: Any, name: str) -> list[Any]:
    """The sum and the cumulative bucket counts of ``seconds`` (NULL where not stamped)."""
    found = [func.coalesce(func.sum(seconds), 0.0).label(f"{name}_sum")]
    for i, bound in enumerate((*BUCKETS, None)):
        hit = seconds.is_not(None) if bound is None else seconds <= bound
        found.append(func.coalesce(func.sum(case((hit, 1), else_=0)), 0).label(f"{name}_{i}"))
    return found


async def path_histograms(
    session: AsyncSession, now: datetime | None = None, window: timedelta = WINDOW
) -> dict[str, Histogram]:
    """Over the inbound messages stored in the last ``window`` (a range on the indexed
    ``created_at``; one aggregate query): ``route`` (received -> routed) and ``agent``
    (received -> agent notified), each counting only the messages stamped at both ends."""
    since = (now or utcnow()) - window
    c = _MESSAGE.c
    spans = {
        "route": _seconds(session, c.received_at, c.routed_at),
        "agent": _seconds(session, c.received_at, c.agent_notified_at),
    }
    columns: list[Any] = []
    for name, seconds in spans.items():
        columns += _aggregates(seconds, name)
    row = (
        await session.execute(select(*columns).where(c.created_at >= since, c.direction == "in"))
    ).one()
    values = row._mapping
    found = {}
    for name in spans:
        counts: Sequence[Any] = [values[f"{name}_{i}"] for i in range(len(BUCKETS) + 1)]
        found[name] = Histogram(tuple(int(n) for n in counts), float(values[f"{name}_sum"]))
    return found
