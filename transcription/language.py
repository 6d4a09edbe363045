"""Which language a short chat message is in (lingua: offline, built for short text).

A chat message is often three words ("ok thanks", "obrigado!"), where any detector is
unsure; the customer's known language is the better guess then. So the known language
is a prior: it stands unless lingua is confident (``override``) that this message is in
another language. With no known language, lingua's best guess is taken when it is at
least ``minimum`` confident and ``MARGIN`` ahead of the runner-up (lingua spreads its
confidence over every candidate, so 40% is a clear lead among 21 languages, while
Malay at 51% against Indonesian at 48% is a coin toss), else it stays unknown.

Restricting the candidates (``HELIOGRAPH_LANGUAGE_CANDIDATES``) makes detection both more
accurate and lighter: lingua keeps one model per language in memory (~15 MB each).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_CANDIDATES = tuple("en es pt fr de it nl ru uk pl tr ar hi zh ja ko ms id vi th sv".split())


MARGIN = 0.1


@dataclass(frozen=True)
class Detection:
    language: str | None  # ISO 639-1, None when unknown
    confidence: float  # lingua's confidence in ``language`` (0 when unknown)
    reason: str  # in words, for logs and the agent: why this language


class UnknownLanguageCode(ValueError):
    pass


_lock = threading.Lock()


@lru_cache(maxsize=8)
def _detector(candidates: tuple[str, ...]) -> Any:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if not candidates:
        return LanguageDetectorBuilder.from_all_languages().build()
    codes = []
    for code in candidates:
        iso = getattr(IsoCode639_1, code.upper(), None)
        if iso is None:
            raise UnknownLanguageCode(f"{code!r} is not an ISO 639-1 code lingua knows")
        codes.append(iso)
    if len(codes) == 1:  # lingua needs two; a single-language team still detects
        codes.append(IsoCode639_1.EN if codes[0] != IsoCode639_1.EN else IsoCode639_1.ES)
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()


def _code(language: Any) -> str:
    return str(language.iso_code_639_1.name).lower()


def confidences(text: str, candidates: tuple[str, ...]) -> list[tuple[str, float]]:
    """(language, confidence) for ``text``, most likely first."""
    with _lock:
        detector = _detector(tuple(candidates))
    values = detector.compute_language_confidence_values(text)
    return [(_code(v.language), float(v.value)) for v in values]


def detect(
    text: str,
    known: str | None = None,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    minimum: float = 0.3,
    override: float = 0.9,
) -> Detection:
    """The language of ``text``; ``known`` (the customer's language) is the prior."""
    letters = sum(ch.isalpha() for ch in text)
    if letters < 2:
        if known:
            return Detection(known, 0.0, "too little text to tell; the known language stands")
        return Detection(None, 0.0, "too little text to tell")
    ranked = confidences(text, candidates)
    if not ranked:
        return Detection(known, 0.0, "no candidate language fits")
    best, confidence = ranked[0]
    if known:
        if best == known:
            return Detection(known, confidence, f"detected {best} ({confidence:.0%}), as known")
        if confidence >= override:
            return Detection(
                best, confidence, f"detected {best} ({confidence:.0%}) over the known {known}"
            )
        return Detection(
            known,
            dict(ranked).get(known, 0.0),
            f"detected {best} at only {confidence:.0%}; the known {known} stands",
        )
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if confidence >= minimum and confidence - runner_up >= MARGIN:
        return Detection(best, confidence, f"detected {best} ({confidence:.0%})")
    return Detection(None, confidence, f"unsure: {best} at only {confidence:.0%}")
