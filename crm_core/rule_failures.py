"""An intervention rule that cannot run: skipped alone, and said so three ways.

The trigger pass runs each rule in a savepoint of its own (``crm_core.interventions``); a
rule that raises, or whose stored setting is out of range, is rolled back and skipped
while the others go on. ``record`` then
- logs it (ERROR, with the rule's name and why);
- counts it: ``heliograph_intervention_rule_failures_total{rule=...}`` in ``/metrics``
  (a Prometheus counter: each process counts the passes it ran);
- publishes ``intervention.rule_failed`` for the admins' chat surfaces (the Slack alert in
  ``surfaces.slack_alerts``), at most once per rule per ``ALERT_EVERY``: a pass runs
  every 15 minutes and a broken setting stays broken until someone fixes it, so an alert
  on every pass would teach admins to ignore it. The alert jobs themselves are the
  record of when a rule last alerted (their dedupe key starts with the rule's name).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.bus import INTERVENTION_RULE_FAILED, RuleFailed
from heliograph import jobs
from heliograph.db import utcnow

log = logging.getLogger(__name__)

ALERT_EVERY = timedelta(hours=1)
ALERT_KEY = "intervention-rule-alert"

_lock = threading.Lock()  # the pass may run on the SQLite writer thread
_failures: Counter[str] = Counter()


def failures_by_rule() -> dict[str, int]:
    """Failures counted by this process since it started, by rule."""
    with _lock:
        return dict(_failures)


async def record(session: AsyncSession, rule: str, title: str, reason: str) -> bool:
    """Log and count a failed rule; alert the admins unless this rule did within the
    hour. True when an alert was queued."""
    log.error("intervention rule %s failed and was skipped this pass: %s", rule, reason)
    with _lock:
        _failures[rule] += 1
    now = utcnow()  # the wall clock, whatever time the pass evaluates rules at
    if await jobs.keyed_since(session, f"{ALERT_KEY}:{rule}:", now - ALERT_EVERY):
        return False
    payload = RuleFailed(rule=rule, title=title, reason=reason, at=now.isoformat())
    rows = jobs.published(INTERVENTION_RULE_FAILED, [payload])
    for row in rows:
        row["dedupe_key"] = f"{ALERT_KEY}:{rule}:{now.isoformat()}:{row['kind']}"
    if rows:
        await session.execute(insert(jobs.JOB_TABLE), rows)
    return bool(rows)
