"""Schemathesis over the whole OpenAPI as an admin: no input may answer a 5xx.

The app runs as a real server (``heliograph serve``, workers and scheduler off) against a
fresh migrated SQLite file with the demo world (``seed-demo``) and an admin's token. Every
operation of the schema it serves gets positive and negative cases (Hypothesis, a fixed
seed), each checked with schemathesis' ``not_a_server_error``. ``make fuzz`` runs at
least 20,000 cases; ``tests/fuzz/test_fuzz.py`` a bounded few hundred in ``make test``.

    .venv/bin/python -m tests.fuzz.runner --cases 20000 --seed 14
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from tests.utils.processes import free_port, heliograph_cli, start_heliograph

ADMIN = "helena@heliograph.example"  # the demo team's admin (service/demo_data/team.yaml)
BYSTANDER = "ceo@heliograph.example"  # the demo's exec: whose access the fuzzer takes away
ACCESS = re.compile(r"/tokens/\{token_id\}|/team-members/\{member_id\}/(de)?activate")
SEEDED_ID = 2  # a customer, conversation, program, member... the demo world has


@dataclass
class Failure:
    operation: str
    status: int
    curl: str
    body: str


@dataclass
class Report:
    operations: int = 0
    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (
            f"{self.cases} cases over {self.operations} operations, "
            f"{len(self.failures)} failures (5xx); statuses {statuses}"
        )


@contextmanager
def seeded_server(workdir: Path, customers: int = 20) -> Iterator[tuple[str, str]]:
    """(base URL, admin token) of a server over a fresh database with the demo world."""
    env = {
        "HELIOGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}",
        "HELIOGRAPH_RUN_WORKERS": "false",
        "HELIOGRAPH_RUN_SCHEDULER": "false",
        "HELIOGRAPH_RATE_LIMIT_ENABLED": "false",  # the fuzzer is one client sending fast
        "HELIOGRAPH_MEDIA_DIR": str(workdir / "media"),
    }
    heliograph_cli(env, "migrate")
    heliograph_cli(env, "seed-demo", "--customers", str(customers))
    heliograph_cli(env, "create-token", BYSTANDER)  # what revoke and deactivate act on
    token = heliograph_cli(env, "create-token", ADMIN).strip().splitlines()[-1]
    server = start_heliograph(["serve"], env, workdir / "server.log", port=free_port())
    try:
        yield server.url, token
    finally:
        server.stop()


def _access_pins(base_url: str, token: str) -> dict[str, int]:
    """The ids that operations taking access away get: the bystander's. A random id
    could be the fuzzing admin's own token or member, and every case after it a 401."""
    auth = {"Authorization": f"Bearer {token}"}
    tokens = requests.get(f"{base_url}/api/v1/tokens", headers=auth, timeout=30).json()
    mine = next(t for t in tokens if t["member_email"] == BYSTANDER)
    return {"token_id": mine["id"], "member_id": mine["member_id"]}


def _run_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    examples: int,
    run: tuple[str, dict[str, str], int],
    report: Report,
    ids: dict[str, int] | None = None,
) -> None:
    base_url, headers, seed_value = run
    strategy = operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=ids)

    @seed(seed_value)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=strategy)
    def one(case: schemathesis.Case) -> None:
        report.cases += 1
        curl = case.as_curl_command(headers={"Authorization": "Bearer <token>"})
        try:
            response = case.call(base_url=base_url, timeout=30)
        except requests.RequestException as exc:  # no answer at all is worse than a 500
            report.failures.append(Failure(operation.label, 0, curl, repr(exc)[:300]))
            return
        report.by_status[response.status_code] = report.by_status.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, FailureGroup):  # the check's verdict: a 5xx
            text = response.text[:300]
            report.failures.append(Failure(operation.label, response.status_code, curl, text))

    try:
        one()
    except Unsatisfiable:
        pass  # nothing to make negative: the operation takes no input to get wrong


def fuzz(base_url: str, token: str, cases: int, seed_value: int) -> Report:
    """About ``cases`` cases spread evenly over every operation: valid input, invalid
    input, and (where the path names records) valid input about records that exist, so
    that what follows "not found" is fuzzed too."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    report = Report(operations=len(operations))
    headers = {"Authorization": f"Bearer {token}"}
    pins = _access_pins(base_url, token)
    # An operation with little input runs out of distinct cases early, so rounds (each
    # with its own seed) go on until ``cases`` were sent.
    for round_ in itertools.count():
        if report.cases >= cases:
            return report
        per_run = max(1, math.ceil((cases - report.cases) / len(operations) / 3))
        run = (base_url, headers, seed_value + round_)
        for operation in operations:
            names = re.findall(r"{(\w+_id)}", operation.path)
            pinned = (
                {n: pins[n] for n in names if n in pins} if ACCESS.search(operation.path) else {}
            )
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _run_operation(operation, mode, per_run, run, report, pinned or None)
            if names and not pinned:
                existing = dict.fromkeys(names, SEEDED_ID)
                _run_operation(operation, GenerationMode.POSITIVE, per_run, run, report, existing)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, seeded_server(Path(tmp)) as (url, token):
        report = fuzz(url, token, args.cases, args.seed)
    for failure in report.failures:
        print(f"FAIL {failure.operation}: {failure.status} {failure.body}\n  {failure.curl}")
    print(f"{report.summary()}; {time.monotonic() - started:.0f} s (seed {args.seed})")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
