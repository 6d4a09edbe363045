"""Where a process's CPU went, from ``bench/pipeline.py --profile DIR``'s py-spy samples.

    .venv/bin/python bench/profile.py DIR [--top 14] [--json FILE]

Each file in DIR holds py-spy's raw collapsed stacks of one process (``--gil``: only the
thread holding the GIL is sampled, so a sample is CPU spent in Python). Start-up (imports)
is counted apart; every other sample is charged to **what it was for**: the asyncio task's
outermost coroutine (a job batch's lane, ``surfaces/slack_threads.py:on_messages``, the
ingest writer), a request (the first of the service's frames below the web framework), or
a greenlet or thread: SQLAlchemy runs its synchronous core in a greenlet whose stack does
not show the awaiting coroutine, so those samples are named by the service's first frame in
them (``heliograph/db.py:_transact``) or by their library alone (``(sqlmodel)``). And to
**where**: the package of the innermost frame (``sqlalchemy``, ``aiohttp``, ``pydantic``,
the service's own code, ...), and for SQLAlchemy the phase (building statements, cache keys,
compiling, executing, loading ORM rows, flushing). Shares are of the steady-state samples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

# The service's own packages (a frame in one of them is "ours").
OURS = {
    "heliograph",
    "inbox",
    "routing",
    "surfaces",
    "channels",
    "crm_core",
    "handoff",
    "web",
    "service",
    "transcription",
    "reporting",
}
STARTUP = "start-up: imports"
RUNNER = "heliograph/jobs.py"
WEB = {"uvicorn", "starlette", "fastapi", "httptools", "h11", "sse_starlette"}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[tuple[str, str, str]]:
    """(function, file as py-spy shows it, package: the file's first folder) per frame."""
    out = []
    for raw in stack.split(";"):
        m = FRAME.match(raw.strip())
        func, file = (m["func"], m["file"]) if m else (raw.strip(), "?")
        package = file.split("/", 1)[0].removesuffix(".py") if "/" in file else file
        out.append((func, file, package))
    return out


def charge(stack: str) -> tuple[str, str]:
    """(what the sample was for, the package of the innermost frame)."""
    frames = _frames(stack)
    leaf = frames[-1][2] if frames else "?"
    if any(file.startswith("<frozen importlib") for _, file, _ in frames):
        return STARTUP, leaf
    tops = [i for i, f in enumerate(frames) if f[0] == "Runner.run"]
    if tops and tops[0] + 1 < len(frames):
        func, file, package = frames[tops[0] + 1]  # the task's outermost coroutine
        if file == RUNNER:  # the job runner's plumbing (lanes, groups): the handler below it
            for func, file, package in frames[tops[0] + 1 :]:
                if package in OURS and file != RUNNER:
                    return f"job {file}:{func}", leaf
        if package in OURS:
            return f"task {file}:{func}", leaf
        if package in WEB:
            for func, file, package in frames[tops[0] + 1 :]:
                if package in OURS:
                    return f"request {file}:{func}", leaf
            return "request (the server and framework)", leaf
        return f"task {file}:{func}", leaf
    if tops:
        return "the event loop itself", leaf
    # Not under the loop: a greenlet (SQLAlchemy's async bridge) or another thread.
    ours = [f"{file}:{func}" for func, file, package in frames if package in OURS]
    kind = (
        "greenlet"
        if any(f[1].startswith("sqlalchemy/util/_concurrency") for f in frames)
        else "thread"
    )
    return f"{kind} {ours[0] if ours else '(' + frames[0][2] + ')'}", leaf


PHASES = (  # the first marker found among a sample's SQLAlchemy frames names its phase
    ("compile", ("sql/compiler.py",)),
    ("cache keys", ("sql/cache_key.py", "sql/traversals.py")),
    ("ORM: loading rows", ("orm/loading.py",)),
    ("ORM: flush", ("orm/unitofwork.py", "orm/persistence.py")),
    ("results and cursors", ("engine/cursor.py", "engine/result.py", "engine/row.py")),
    ("executing", ("engine/default.py", "engine/base.py", "connectors/asyncio.py")),
    (
        "building statements",
        (
            "sql/elements.py",
            "sql/selectable.py",
            "sql/coercions.py",
            "sql/operators.py",
            "sql/dml.py",
            "sql/_selectable_constructors.py",
            "sql/annotation.py",
        ),
    ),
    ("ORM: other", ("orm/",)),
)


def sqlalchemy_phase(frames: list[tuple[str, str, str]]) -> str | None:
    files = [file for _, file, package in frames if package == "sqlalchemy"]
    if not files:
        return None
    for phase, markers in PHASES:
        if any(marker in file for file in files for marker in markers):
            return phase
    return "other (greenlet bridge, pools)"


def read(path: Path) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    samples: Counter[tuple[str, str]] = Counter()
    phases: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not (stack and count.isdigit()):
            continue
        work, lib = charge(stack)
        samples[work, lib] += int(count)
        phase = sqlalchemy_phase(_frames(stack)) if work != STARTUP else None
        if phase:
            phases[phase] += int(count)
    return samples, phases


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%"


def report(path: Path, top: int) -> dict[str, object]:
    samples, phases = read(path)
    by_work: Counter[str] = Counter()
    by_lib: Counter[str] = Counter()
    within: dict[str, Counter[str]] = defaultdict(Counter)
    for (work, lib), n in samples.items():
        by_work[work] += n
        if work != STARTUP:
            by_lib[lib] += n
        within[work][lib] += n
    startup = by_work.pop(STARTUP, 0)
    steady = sum(by_work.values()) or 1
    print(f"\n{path.name}: {steady} samples at 100 a second holding the GIL ({steady / 100:.0f} s")
    print(f"of CPU in Python), after {startup} at start-up (imports)")
    print(f"  {'for what':<66} share  where")
    for work, n in by_work.most_common(top):
        libs = ", ".join(f"{lib} {_pct(m, n)}" for lib, m in within[work].most_common(3))
        print(f"  {work[:66]:<66} {_pct(n, steady):>5}  {libs}")
    print(
        "  in which package: "
        + ", ".join(f"{k} {_pct(n, steady)}" for k, n in by_lib.most_common(top))
    )
    print(
        "  SQLAlchemy by phase: "
        + ", ".join(f"{k} {_pct(n, steady)}" for k, n in phases.most_common())
    )
    share = {k: round(100 * v / steady, 2) for k, v in by_work.most_common()}
    return {
        "steady_samples": steady,
        "startup_samples": startup,
        "by_work": share,
        "by_package": {k: round(100 * v / steady, 2) for k, v in by_lib.most_common()},
        "sqlalchemy_by_phase": {k: round(100 * v / steady, 2) for k, v in phases.most_common()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="bench/pipeline.py --profile's folder")
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    files = sorted(args.dir.glob("*.txt"))
    if not files:
        print(f"no py-spy output in {args.dir}", file=sys.stderr)
        return 1
    out = {f.name: report(f, args.top) for f in files}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
