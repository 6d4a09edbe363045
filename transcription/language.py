"""Which language a short chat message is in (lingua: offline, built for short text).

The text decides; the app's language (a Telegram client's ``language_code``, the
customer's profile) is only a prior. "Hola, no puedo entrar a mi curso desde ayer" from
an app set to English is Spanish: lingua gives Spanish 73% and English 1%.

The rules, calibrated on ``tests/fixtures/language/short_messages.jsonl`` (short support
messages in the 21 default languages, each with the app's language; ``bench/language.py``
prints the figures):

- A message of ``SWITCH_MIN_WORDS`` words or more takes lingua's best language when it
  is at least ``SWITCH_CONFIDENCE`` and ``SWITCH_MARGIN`` ahead of the runner-up, whatever
  the prior says; lingua spreads its confidence over every candidate, so 40% with a
  25-point lead is a clear answer among 21 languages, while Portuguese 55% against
  Spanish 41% is not (that message was Spanish).
- A shorter message ("ok thanks", "obrigado!") keeps the prior, undecided even where
  lingua agrees with it, unless lingua is ``override`` sure of another language (a
  script only one candidate uses: "ありがとう" is Japanese).
- Malay and Indonesian share most of their words, and lingua's split between them in a
  short message is a coin toss (51% against 48%); the words the two standards spell or
  say differently (``_MALAY`` / ``_INDONESIAN``) decide between them when only one side's
  appear.
- A message of 4+ words whose best language is the prior is decided.
- Without a prior, the best guess needs ``minimum`` confidence and ``MARGIN``'s lead.
- Otherwise nothing is decided: the prior stands (or the language stays unknown), and
  ``Detection.decided`` is False.

The detector knows the candidates (``HELIOGRAPH_LANGUAGE_CANDIDATES``) and nothing else,
and lingua loads a language's models the first
time a text in its script reaches it (never all at once: no preloading). A language
written in Latin or Cyrillic letters costs a process 25-50 MB once such a text arrives;
one that alone among the candidates uses its script (Arabic, Hindi, Thai, Korean) is
decided by the script and loads nothing. Every language lingua knows ("all") is about
1.1 GB per process (``bench/memory.py``, #17). lingua builds the models on its heap:
threads share them, processes cannot. So the service detects through one detector process
per machine (``transcription.shared_detector``, HELIOGRAPH_LANGUAGE_DETECTOR=shared, the
default) that every serve and worker process on it asks; the rules below run in the
caller either way, and a process that runs no workers never asks.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from transcription.shared_detector import DetectorUnavailable, SharedDetector

log = logging.getLogger(__name__)

# The 21 languages of the labelled set the rules were calibrated on
# (tests/fixtures/language), and what ``detect`` chooses among when not told; the service
# passes the setting instead (heliograph/settings.py: a lighter list by default).
DEFAULT_CANDIDATES = tuple("en es pt fr de it nl ru uk pl tr ar hi zh ja ko ms id vi th sv".split())
ALL = "all"  # the setting's word for every language lingua knows

MARGIN = 0.15  # without a prior: the best guess's lead over the runner-up
SWITCH_MIN_WORDS = 4
SWITCH_CONFIDENCE = 0.4
SWITCH_MARGIN = 0.25

# Scripts written without spaces: about two characters a word in Chinese and Japanese,
# four in Thai, for the word-count rule.
_HAN_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_THAI = re.compile(r"[\u0e00-\u0e7f]")
_WORD = re.compile(r"[^\W\d_]+(?:[-'\u2019][^\W\d_]+)*")

# Words one standard uses and the other does not (Dewan Bahasa dan Pustaka against
# KBBI usage), the everyday ones of support chats: "can" (boleh / bisa), "account"
# (akaun / akun), "card", "password", "download", "certificate", "free", "want", "already".
_MALAY = frozenset(
    "akaun kad laluan emel sijil percuma dicaj caj nak dah je telefon invois diskaun "
    "macam mula bermula tiada sahaja mahu kerana".split()
)
_INDONESIAN = frozenset(
    "akun kartu sandi unduh mengunduh diunduh sertifikat gratis bisa udah nggak gak "
    "aja dong sih kok gimana banget telepon faktur diskon tagihan karena".split()
)


@dataclass(frozen=True)
class Detection:
    language: str | None  # ISO 639-1, None when unknown
    confidence: float  # lingua's confidence in ``language`` (0 when unknown)
    reason: str  # in words, for logs and the agent: why this language
    decided: bool = False  # the text decided it (False: the prior stands, or unknown)


class UnknownLanguageCode(ValueError):
    pass


_lock = threading.Lock()


def known_languages(candidates: tuple[str, ...]) -> tuple[str, ...]:
    """The languages a detector for ``candidates`` chooses among (ISO 639-1, sorted):
    exactly the candidates, or every language lingua knows for ``("all",)``. Raises
    ``UnknownLanguageCode`` for a code lingua does not detect, or for none at all."""
    from lingua import Language

    known = {str(lang.iso_code_639_1.name).lower() for lang in Language.all()}
    codes = {c.strip().lower() for c in candidates if c.strip()}
    if codes == {ALL}:
        return tuple(sorted(known))
    if not codes:
        raise UnknownLanguageCode('no candidate languages: name some, or "all"')
    unknown = sorted(codes - known)
    if unknown:
        raise UnknownLanguageCode(f"{', '.join(unknown)}: not ISO 639-1 codes lingua detects")
    return tuple(sorted(codes))


@lru_cache(maxsize=8)
def _detector(candidates: tuple[str, ...]) -> Any:
    """lingua's detector for exactly these languages, its models loaded lazily (a
    language's the first time a text in its script needs them); None for one language,
    which needs no detector. Detectors share the models they have in common."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = known_languages(candidates)
    if len(codes) == 1:
        return None
    return LanguageDetectorBuilder.from_iso_codes_639_1(
        *(getattr(IsoCode639_1, code.upper()) for code in codes)
    ).build()


def _code(language: Any) -> str:
    return str(language.iso_code_639_1.name).lower()


def language_name(code: str) -> str:
    """``"ja"`` -> ``"Japanese"`` (lingua's English names); the code itself if unknown."""
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, code.strip().upper(), None) if code.strip() else None
    if iso is None:
        return code
    return str(Language.from_iso_code_639_1(iso).name).title()


def confidences(
    text: str, candidates: tuple[str, ...], shared: SharedDetector | None = None
) -> list[tuple[str, float]]:
    """(language, confidence) for ``text``, most likely first: from the machine's shared
    detector when given one (``transcription.shared_detector``), else in this process
    (also when the shared one cannot be reached: no message waits on it)."""
    if shared is not None:
        try:
            return shared.confidences(text, candidates)
        except DetectorUnavailable as exc:
            log.warning("detecting in this process instead: %s", exc)
    return local_confidences(text, candidates)


def local_confidences(text: str, candidates: tuple[str, ...]) -> list[tuple[str, float]]:
    """lingua's ranking, with its models in this process."""
    with _lock:
        detector = _detector(tuple(candidates))
    if detector is None:  # a single-language team: every text is in that language
        return [(known_languages(tuple(candidates))[0], 1.0)]
    values = detector.compute_language_confidence_values(text)
    return [(_code(v.language), float(v.value)) for v in values]


def word_count(text: str) -> int:
    """Words in ``text``; in scripts without spaces, estimated from its characters."""
    dense = len(_HAN_KANA.findall(text)) / 2 + len(_THAI.findall(text)) / 4
    spaced = _WORD.findall(_THAI.sub(" ", _HAN_KANA.sub(" ", text)))
    return len(spaced) + int(dense)


def _split_malay(text: str, ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """When lingua's first two are Malay and Indonesian, let the words only one of them
    uses decide: the pair's joint confidence goes to that one."""
    if len(ranked) < 2 or {ranked[0][0], ranked[1][0]} != {"ms", "id"}:
        return ranked
    words = {w.lower() for w in _WORD.findall(text)}
    malay, indonesian = bool(words & _MALAY), bool(words & _INDONESIAN)
    if malay == indonesian:
        return ranked
    winner = "ms" if malay else "id"
    joint = ranked[0][1] + ranked[1][1]
    return [(winner, joint), ("id" if malay else "ms", 0.0), *ranked[2:]]


def detect(
    text: str,
    known: str | None = None,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    minimum: float = 0.3,
    override: float = 0.9,
    shared: SharedDetector | None = None,
) -> Detection:
    """The language of ``text``; ``known`` (the app's or the customer's language) is
    the prior, kept only where the text does not decide (see the module's rules)."""
    if sum(ch.isalpha() for ch in text) < 2:
        if known:
            return Detection(known, 0.0, "too little text to tell; the known language stands")
        return Detection(None, 0.0, "too little text to tell")
    ranked = _split_malay(text, confidences(text, candidates, shared))
    if not ranked:
        return Detection(known, 0.0, "no candidate language fits")
    if known:
        return _with_prior(text, known, ranked, override)
    best, confidence = ranked[0]
    lead = confidence - (ranked[1][1] if len(ranked) > 1 else 0.0)
    if confidence >= minimum and lead >= MARGIN:
        return Detection(best, confidence, f"detected {best} ({confidence:.0%})", True)
    return Detection(None, confidence, f"unsure: {best} at only {confidence:.0%}")


def _with_prior(
    text: str, known: str, ranked: list[tuple[str, float]], override: float
) -> Detection:
    best, confidence = ranked[0]
    lead = confidence - (ranked[1][1] if len(ranked) > 1 else 0.0)
    long = word_count(text) >= SWITCH_MIN_WORDS
    if best == known:
        # A short message agreeing with the prior says little: the prior stands.
        return Detection(known, confidence, f"detected {best} ({confidence:.0%}), as known", long)
    clear = confidence >= SWITCH_CONFIDENCE and lead >= SWITCH_MARGIN
    if (long and clear) or confidence >= override:
        return Detection(
            best, confidence, f"detected {best} ({confidence:.0%}) over the known {known}", True
        )
    why = f"only {confidence:.0%}" if long else "too short to tell"
    return Detection(
        known,
        dict(ranked).get(known, 0.0),
        f"detected {best} ({why}); the known {known} stands",
    )
