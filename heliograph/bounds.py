"""What any input may hold: the one place that bounds ids, text, dates and JSON.

Every entry point (the HTTP boundary in web/boundary.py, request and event schemas,
webhook parsing in channels/base.py, activity events in crm_core/events.py) checks with these,
so an input the database or Python cannot hold is refused with its reason (a 4xx), never
reached by a driver that fails on it (a 500):

- ids: PostgreSQL's INTEGER, 1 .. 2**31 - 1 (SQLite holds more; the API promises the same);
- text: no NUL character (PostgreSQL cannot store U+0000 in text or JSON);
- dates: converted to UTC inside 1900 .. 9000, so that converting a zone or adding the
  days of a rule never leaves Python's years 1 .. 9999 (an OverflowError);
- JSON: at most ``MAX_JSON_DEPTH`` levels (Python's parser raises RecursionError on deep
  nesting), no NaN or Infinity (not JSON; PostgreSQL refuses them), integers in 64 bits.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import AfterValidator

MAX_ID = 2**31 - 1
MAX_INT = 2**63 - 1  # what a BIGINT (and most JSON consumers) can hold
MAX_JSON_DEPTH = 64
MIN_DATE = datetime(1900, 1, 1, tzinfo=UTC)
MAX_DATE = datetime(9000, 1, 1, tzinfo=UTC)
NUL = "\x00"

OUT_OF_RANGE = (
    f"the date is outside the supported range ({MIN_DATE:%Y-%m-%d} .. {MAX_DATE:%Y-%m-%d} UTC)"
)
HAS_NUL = "contains a NUL character (\\u0000), which text cannot hold"


class InputRefused(ValueError):
    """An input nothing downstream can hold; ``where`` names the field (``a.b.0``)."""

    def __init__(self, problem: str, where: str = "") -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.problem = problem
        self.where = where


class TooDeep(InputRefused):
    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"the JSON is nested deeper than {limit} levels")


# --- ids and dates (pydantic types: they bound a field wherever it is declared) ---------------

DbId = Annotated[int, Interval(ge=1, le=MAX_ID)]
"""A record id the database can hold; in a query, a body or a path."""


def to_utc(value: datetime) -> datetime:
    """Naive times are UTC (as in the whole API); others are converted. Out of range:
    ValueError, which pydantic reports as a 422 on the field."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 at +01:00, year 9999 at -01:00
        raise ValueError(OUT_OF_RANGE) from None
    if not MIN_DATE <= utc < MAX_DATE:
        raise ValueError(OUT_OF_RANGE)
    return utc


UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]
"""A datetime converted to UTC and inside the supported range."""


# --- JSON -------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON, refusing nesting past ``max_depth`` (TooDeep) and NaN/Infinity
    (ValueError). A body that nests far deeper than Python's parser can follow is caught
    as the RecursionError it raises, before any of it reaches a model."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise TooDeep(max_depth) from None
    if may_nest_past(body.encode() if isinstance(body, str) else body, max_depth):
        check_depth(value, max_depth)
    return value


def may_nest_past(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """False when ``raw`` cannot nest past ``max_depth``: it opens no more containers than
    that (two byte counts, no parse)."""
    return raw.count(b"{") + raw.count(b"[") > max_depth


def check_depth(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """TooDeep when ``value`` nests containers more than ``max_depth`` levels (iterative:
    a walk that recursed would fail on exactly the inputs it is meant to refuse)."""
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise TooDeep(max_depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def _path(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts)


def find_problem(value: Any, strict_numbers: bool = False) -> InputRefused | None:
    """The first string (or key) holding NUL in ``value``, with its path; with
    ``strict_numbers`` also a non-finite float or an integer past 64 bits."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if NUL in node:
                return InputRefused(HAS_NUL, _path(where))
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and NUL in key:
                    return InputRefused(f"a key {HAS_NUL}", _path(where))
                stack.append((child, (*where, key)))
        elif isinstance(node, list | tuple):
            stack.extend((child, (*where, i)) for i, child in enumerate(node))
        elif strict_numbers and isinstance(node, float) and not math.isfinite(node):
            return InputRefused("the number is not finite", _path(where))
        elif strict_numbers and isinstance(node, int) and not -MAX_INT - 1 <= node <= MAX_INT:
            return InputRefused("the number is outside 64-bit range", _path(where))
    return None


def check_text(value: Any) -> None:
    """InputRefused when any string in ``value`` holds NUL (a pydantic-level guard)."""
    if (problem := find_problem(value)) is not None:
        raise problem


def strip_nul(value: Any) -> Any:
    """``value`` with NUL removed from every string and key (for provider webhooks)."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value
