"""Where a process's CPU went, from ``bench/pipeline.py --profile DIR``'s py-spy samples.

    .venv/bin/python bench/profile.py DIR [--top 12] [--json FILE]

Each file in DIR holds py-spy's raw collapsed stacks of one process (``--gil``: only the
thread holding the GIL is sampled, so a sample is CPU spent in Python). A sample is charged
to **what it was doing for**: the job kind's handler (the first frame of the service's own
code below the job runner, e.g. ``surfaces/slack_threads.py:on_messages``), the runner's
own claim/complete, a request (the first of the service's frames below the web framework,
e.g. ``channels/api/routes.py:inbound``) or the rest (the event loop, the scheduler); and,
within that, to **where**: the library of the innermost frame (``sqlalchemy``, ``slack_sdk``,
``pydantic``, ``asyncio``, the service's own code, ...). It prints both, as shares of the
process's samples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

# The service's own packages (a frame in one of them is "ours").
OURS = (
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
)
RUNNER = "heliograph/jobs.py"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def _where(file: str) -> tuple[str, str]:
    """(package, path within the checkout or site-packages) of a frame's file."""
    parts = Path(file).parts
    for marker in ("site-packages", "lib-dynload"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return (rest[0].removesuffix(".py") if rest else marker), "/".join(rest)
    for i, part in enumerate(parts):
        if part in OURS:
            return part, "/".join(parts[i:])
    if "python3" in file or "/lib/python" in file:
        return "stdlib:" + Path(file).stem, Path(file).name
    return Path(file).stem, Path(file).name


def _frames(stack: str) -> list[tuple[str, str, str]]:
    out = []
    for raw in stack.split(";"):
        m = FRAME.match(raw.strip())
        if m is None:
            out.append((raw.strip(), "?", "?"))
            continue
        package, path = _where(m["file"])
        out.append((m["func"], package, path))
    return out


def charge(stack: str) -> tuple[str, str]:
    """(what the sample was for, the library it was in)."""
    frames = _frames(stack)
    leaf = frames[-1][1] if frames else "?"
    if leaf.startswith("stdlib:"):
        leaf = "stdlib:" + {"events": "asyncio", "base_events": "asyncio"}.get(leaf[7:], leaf[7:])
    runner = [i for i, f in enumerate(frames) if f[2] == RUNNER]
    if runner:
        last = runner[-1]
        for func, package, path in frames[last + 1 :]:
            if package in OURS:
                return f"job {path}:{func}", leaf
        return f"jobs runner ({frames[last][0]})", leaf
    web = [i for i, f in enumerate(frames) if f[1] in ("starlette", "fastapi", "uvicorn")]
    if web:
        for func, package, path in frames[web[0] :]:
            if package in OURS:
                return f"request {path}:{func}", leaf
        return "request (framework)", leaf
    for func, package, path in reversed(frames):
        if package in OURS:
            return f"other {path}:{func}", leaf
    return "other (loop, libraries)", leaf


def read(path: Path) -> Counter[tuple[str, str]]:
    samples: Counter[tuple[str, str]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[charge(stack)] += int(count)
    return samples


def report(path: Path, top: int) -> dict[str, object]:
    samples = read(path)
    total = sum(samples.values()) or 1
    by_work: Counter[str] = Counter()
    by_lib: Counter[str] = Counter()
    within: dict[str, Counter[str]] = defaultdict(Counter)
    for (work, lib), n in samples.items():
        by_work[work] += n
        by_lib[lib] += n
        within[work][lib] += n
    print(f"\n{path.name}: {total} samples (100 a second while holding the GIL)")
    print("  for what                                                       share  top libraries")
    for work, n in by_work.most_common(top):
        libs = ", ".join(f"{lib} {100 * m / n:.0f}%" for lib, m in within[work].most_common(3))
        print(f"  {work[:62]:<62} {100 * n / total:5.1f}%  {libs}")
    print(
        "  in which library: "
        + ", ".join(f"{lib} {100 * n / total:.1f}%" for lib, n in by_lib.most_common(top))
    )
    return {
        "samples": total,
        "by_work": {k: round(100 * v / total, 2) for k, v in by_work.most_common()},
        "by_library": {k: round(100 * v / total, 2) for k, v in by_lib.most_common()},
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
