"""The bounded fuzz run of ``make test``: a few hundred schemathesis cases over every
operation of the OpenAPI, as an admin, against a seeded server; no answer may be a 5xx.
``make fuzz`` runs the same at 20,000+ cases (docs/fuzzing.md)."""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.runner import fuzz, seeded_server

CASES = 300
SEED = 14


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    with seeded_server(tmp_path, customers=5) as (url, token):
        report = fuzz(url, token, CASES, SEED)
    assert report.operations >= 60, report.summary()  # the whole API, not a corner of it
    assert report.cases >= 300, report.summary()
    assert sum(n for status, n in report.by_status.items() if status < 300) > 0
    assert not report.failures, "\n".join(
        f"{f.operation}: {f.status} {f.body}\n  {f.curl}" for f in report.failures[:20]
    )
