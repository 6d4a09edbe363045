"""The labelled short messages (tests/fixtures/language/) and how detection scores on them.

Shared by the calibration test and ``bench/language.py``. A message is *decided* when
the text chose its language (``Detection.decided``); otherwise the prior stood or the
language stayed unknown, which is neither right nor wrong. The target (issue #14): on
messages of ``SWITCH_MIN_WORDS`` words or more, at least 97% decided right and none
decided wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transcription.language import (
    DEFAULT_CANDIDATES,
    SWITCH_MIN_WORDS,
    Detection,
    detect,
    word_count,
)

SET = Path(__file__).resolve().parents[1] / "fixtures" / "language" / "short_messages.jsonl"
TARGET_DECIDED_RIGHT = 0.97


@dataclass(frozen=True)
class Labelled:
    text: str
    language: str  # what it is written in
    prior: str  # the app's language


@dataclass(frozen=True)
class Outcome:
    message: Labelled
    detection: Detection

    @property
    def long(self) -> bool:
        return word_count(self.message.text) >= SWITCH_MIN_WORDS

    @property
    def verdict(self) -> str:
        """ "right", "wrong" (decided either way), or "undecided"."""
        if not self.detection.decided:
            return "undecided"
        return "right" if self.detection.language == self.message.language else "wrong"


def load(path: Path = SET) -> list[Labelled]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            data = json.loads(line)
            rows.append(Labelled(data["text"], data["language"], data["prior"]))
    return rows


def run(
    messages: Iterable[Labelled],
    with_prior: bool = True,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    detector: Callable[..., Detection] = detect,
) -> list[Outcome]:
    return [
        Outcome(m, detector(m.text, known=m.prior if with_prior else None, candidates=candidates))
        for m in messages
    ]


def figures(outcomes: list[Outcome]) -> dict[str, Any]:
    """Counts and shares per verdict, and what ended up right (decided or by the prior)."""
    n = len(outcomes)
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("right", "wrong", "undecided")}
    final = sum(o.detection.language == o.message.language for o in outcomes)
    return {
        "messages": n,
        "decided_right": counts["right"],
        "decided_wrong": counts["wrong"],
        "undecided": counts["undecided"],
        "decided_right_share": round(counts["right"] / n, 4) if n else None,
        "final_right_share": round(final / n, 4) if n else None,
    }
