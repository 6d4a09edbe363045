"""Prometheus text exposition built from the database, so every process reports the same."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import jobs
from inbox.conversations import count_by_status
from inbox.outbox import message_counts, outbox_lag_seconds


def _line(name: str, value: float, **labels: str) -> str:
    if not labels:
        return f"{name} {value}"
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {value}"


async def render(session: AsyncSession) -> str:
    out: list[str] = [
        "# HELP heliograph_messages_total Messages stored, by direction, channel and status.",
        "# TYPE heliograph_messages_total counter",
    ]
    for direction, channel, status, count in await message_counts(session):
        out.append(
            _line(
                "heliograph_messages_total",
                count,
                direction=direction,
                channel=channel,
                status=status,
            )
        )
    stats = await jobs.queue_stats(session)
    out += ["# HELP heliograph_jobs Durable jobs by state.", "# TYPE heliograph_jobs gauge"]
    for state in ("pending", "running", "done", "dead"):
        out.append(_line("heliograph_jobs", stats.get(state, 0), state=state))
    out += [
        "# HELP heliograph_outbox_lag_seconds Age of the oldest reply not yet sent.",
        "# TYPE heliograph_outbox_lag_seconds gauge",
        _line("heliograph_outbox_lag_seconds", round(await outbox_lag_seconds(session), 3)),
        "# HELP heliograph_conversations Conversations by status.",
        "# TYPE heliograph_conversations gauge",
    ]
    for status, count in sorted((await count_by_status(session)).items()):
        out.append(_line("heliograph_conversations", count, status=status))
    return "\n".join(out) + "\n"
