"""Prometheus text exposition: the service's state from the database (so every process
reports the same), then this process's own request metrics.

Request metrics (``web.protection`` observes every HTTP request) are per process, as
Prometheus expects of a scrape target: a latency histogram and a count of answers by
status class, labelled by the route's *template* (``/api/v1/conversations/{conversation_id}``,
never the raw path, so that ids cannot make the label set grow without bound), and the
requests refused by each rate limit.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.rule_failures import failures_by_rule
from crm_core.triggers import DEFAULT_RULES
from heliograph import jobs
from inbox.conversations import count_by_status
from inbox.outbox import message_counts, outbox_lag_seconds
from inbox.path_times import BUCKETS, path_histograms

# No *_created series: a timestamp per label set doubles the page and no dashboard reads it.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_SECONDS = Histogram(
    "heliograph_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
RESPONSES = Counter(
    "heliograph_http_responses",
    "HTTP answers by method, route template and status class (2xx, 4xx, 5xx...).",
    ["method", "route", "status"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "heliograph_rate_limited",
    "Requests refused with 429, by the limit that refused them.",
    ["limit"],
    registry=REGISTRY,
)
_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}
_children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request (a few microseconds: the labelled children are cached)."""
    key = (method, route, status // 100)
    children = _children.get(key)
    if children is None:
        status_class = _STATUS_CLASS.get(status // 100, "other")
        children = (
            REQUEST_SECONDS.labels(method, route),
            RESPONSES.labels(method, route, status_class),
        )
        _children[key] = children
    children[0].observe(seconds)
    children[1].inc()


def observe_refusal(limit: str) -> None:
    RATE_LIMITED.labels(limit).inc()


def _line(name: str, value: float, **labels: str) -> str:
    if not labels:
        return f"{name} {value}"
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {value}"


def rule_failure_lines() -> list[str]:
    """Intervention rules skipped by this process's trigger passes (crm_core.rule_failures)."""
    out = [
        "# HELP heliograph_intervention_rule_failures_total Trigger passes in which a rule "
        "failed and was skipped, by rule (this process).",
        "# TYPE heliograph_intervention_rule_failures_total counter",
    ]
    counts = failures_by_rule()
    for rule in DEFAULT_RULES:
        name = "heliograph_intervention_rule_failures_total"
        out.append(_line(name, counts.get(rule, 0), rule=rule))
    return out


_PATH_TIMES = {
    "route": (
        "heliograph_time_to_route_seconds",
        "From our door (received_at) to routing's decision (routed_at), over the inbound "
        "messages of the last 15 minutes (a window: read it as is, not with rate()).",
    ),
    "agent": (
        "heliograph_time_to_agent_seconds",
        "From our door (received_at) to the agent's surface accepting the post "
        "(agent_notified_at), over the inbound messages of the last 15 minutes (a window: "
        "read it as is, not with rate()).",
    ),
}


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def path_time_lines(session: AsyncSession) -> list[str]:
    """Time to route and time to agent, from the messages' stamps (inbox.path_times)."""
    families: list[Metric] = []
    for key, histogram in (await path_histograms(session)).items():
        name, documentation = _PATH_TIMES[key]
        bounds = [*(str(b) for b in BUCKETS), "+Inf"]
        families.append(
            HistogramMetricFamily(
                name,
                documentation,
                buckets=list(zip(bounds, histogram.buckets, strict=True)),
                sum_value=round(histogram.total, 6),
            )
        )
    return generate_latest(_Families(families)).decode().splitlines()  # type: ignore[arg-type]


def job_kind_lines(backlog: list[jobs.KindBacklog]) -> list[str]:
    """Per job kind: due jobs waiting, jobs running, and the wait of the oldest due one."""
    series = (
        ("heliograph_jobs_due", "Due jobs waiting for a worker, by kind.", "due"),
        ("heliograph_jobs_running", "Jobs a worker holds, by kind.", "running"),
        (
            "heliograph_job_oldest_due_seconds",
            "How long the oldest due job of each kind has waited.",
            "oldest_due_s",
        ),
    )
    out: list[str] = []
    for name, help_text, field in series:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        out += [_line(name, round(getattr(b, field), 3), kind=b.kind) for b in backlog]
    return out


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
    out += job_kind_lines(await jobs.backlog_by_kind(session))
    out += [
        "# HELP heliograph_outbox_lag_seconds Age of the oldest reply not yet sent.",
        "# TYPE heliograph_outbox_lag_seconds gauge",
        _line("heliograph_outbox_lag_seconds", round(await outbox_lag_seconds(session), 3)),
        "# HELP heliograph_conversations Conversations by status.",
        "# TYPE heliograph_conversations gauge",
    ]
    for status, count in sorted((await count_by_status(session)).items()):
        out.append(_line("heliograph_conversations", count, status=status))
    out += await path_time_lines(session)
    out += rule_failure_lines()
    return "\n".join(out) + "\n" + generate_latest(REGISTRY).decode()
