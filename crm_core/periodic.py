"""The CRM's periodic work, run by the scheduler's leader; importing this loads the CRM's
hooks (merge, export, erase) as well."""

from __future__ import annotations

import logging
import time

from crm_core import interventions, scores
from crm_core import merging as _merging  # noqa: F401  (registers the merge hook)
from heliograph import jobs
from heliograph.db import Database
from heliograph.scheduler import every

log = logging.getLogger(__name__)

TRIGGER_PASS_SECONDS = 900


@every(TRIGGER_PASS_SECONDS)
async def intervention_pass(db: Database) -> int:
    """Every rule over every customer (set-based: one query per rule)."""
    started = time.perf_counter()
    result = await db.run_session(interventions.evaluate)
    jobs.wake_workers()
    if result.created:
        log.info(
            "intervention pass: %d new %s in %.1f s",
            result.created,
            result.by_rule,
            time.perf_counter() - started,
        )
    return result.created


@every(3600)
async def nightly_scores(db: Database) -> int:
    """Scores older than 20 hours are recomputed (recency decays without events), so each
    customer's are refreshed about once a night whenever the process started."""
    return await scores.refresh_stale(db)
