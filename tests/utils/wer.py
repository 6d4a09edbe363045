"""Word error rate: (substitutions + deletions + insertions) / words said."""

from __future__ import annotations

import re
import unicodedata


def words(text: str) -> list[str]:
    text = unicodedata.normalize("NFC", text.lower()).replace("'", " ").replace("\u2019", " ")
    return re.findall(r"\w+", text)


def wer(said: str, heard: str) -> float:
    ref, hyp = words(said), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)
