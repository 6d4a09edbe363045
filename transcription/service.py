"""The process's speech-to-text service: one model, loaded once, run off the event loop.

Whisper is CPU-bound for seconds at a time, so every decode and every window runs in a
small thread pool (CTranslate2 and PyTorch release the GIL while they compute, so the
event loop and the other jobs keep going). The model loads on first use and stays loaded;
a model that cannot be loaded is reported once and every later note is marked
"unavailable" with the same reason instead of failing over and over.

A note is transcribed window by window (``audio.windows``: about 30 s each, cut in a
pause). ``transcribe`` stops after ``budget_s`` and says where to go on, so a job never
holds its lease longer than one window: the caller stores the text so far and continues
in a fresh job.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from heliograph.settings import Settings, get_settings
from transcription import audio, engines, weights

if TYPE_CHECKING:
    from transcription.engines import Engine

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a note got: texts per window done, and where to go on (None: finished)."""

    status: str  # ok, empty, failed, unavailable, partial
    texts: list[str] = field(default_factory=list)
    language: str | None = None
    language_probability: float | None = None
    next_window: int | None = None
    windows: int = 0
    duration_s: float = 0.0
    note: str | None = None  # the reason for failed/empty/unavailable, or how it went

    @property
    def text(self) -> str:
        return " ".join(t for t in self.texts if t).strip()


def engine_config(settings: Settings) -> engines.EngineConfig:
    return engines.EngineConfig(
        model=settings.whisper_model,
        model_dir=Path(settings.whisper_model_dir),
        device=settings.whisper_device,
        compute_type=settings.whisper_compute_type,
        threads=settings.whisper_threads,
        beam_size=settings.whisper_beam_size,
    )


class Transcriber:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(
            max_workers=max(settings.whisper_workers, 1), thread_name_prefix="whisper"
        )
        self._engine: Engine | None = engine  # a model loaded already (tests, the bench)
        self._error: str | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        """The loaded model (loads it on first call; call from the pool, not the loop)."""
        with self._lock:
            if self._engine is not None:
                return self._engine
            if self._error is not None:
                raise engines.ModelUnavailable(self._error)
            name = self.settings.whisper_engine
            try:
                if name == "none":
                    raise engines.ModelUnavailable(
                        "transcription is switched off (HELIOGRAPH_WHISPER_ENGINE=none)"
                    )
                started = time.monotonic()
                self._engine = engines.load_engine(name, engine_config(self.settings))
            except engines.ModelUnavailable as exc:
                self._error = str(exc)
                log.warning("voice notes will not be transcribed: %s", exc)
                raise
            log.info(
                "whisper loaded: %s %s in %.1f s",
                name,
                self._engine.model,
                time.monotonic() - started,
            )
            return self._engine

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def transcribe(
        self,
        path: str,
        *,
        first_window: int = 0,
        language: str | None = None,
        prior_language: str | None = None,
        budget_s: float | None = None,
    ) -> Progress:
        """Transcribe ``path`` from window ``first_window`` until done or ``budget_s`` spent.

        ``language`` fixes the language (a continuation keeps the first window's);
        ``prior_language`` (the customer's known language) is used instead of whisper's
        own guess when whisper is unsure (``whisper_min_language_probability``).
        """
        s = self.settings
        try:
            engine = await self._run(self.engine)
        except engines.ModelUnavailable as exc:
            return Progress("unavailable", note=str(exc)[:500])
        try:
            samples: np.ndarray = await self._run(audio.decode_audio, path, s.whisper_max_audio_s)
        except (audio.AudioDecodeError, OSError) as exc:
            return Progress("failed", note=str(exc)[:500])
        progress = Progress("partial", language=language, duration_s=audio.duration_s(samples))
        if audio.is_silent(samples):
            progress.status = "empty"
            progress.note = f"no speech: the {progress.duration_s:.1f} s of audio are silent"
            return progress
        cuts = audio.windows(samples, s.whisper_window_s)
        progress.windows = len(cuts)
        started = time.monotonic()
        for index in range(first_window, len(cuts)):
            if budget_s is not None and index > first_window:
                if time.monotonic() - started > budget_s:
                    progress.next_window = index
                    return progress
            piece = audio.piece(samples, cuts[index])
            try:
                result = await self._window(engine, piece, progress, prior_language)
            except Exception as exc:  # the engine itself failed on this audio
                log.exception("whisper failed on %s", path)
                return Progress("failed", note=f"{engine.name} failed: {exc}"[:500])
            progress.texts.append(result.text)
        progress.next_window = None
        progress.status = "ok" if progress.text else "empty"
        if progress.status == "empty":
            progress.note = f"no words recognised in {progress.duration_s:.1f} s of audio"
        return progress

    async def _window(
        self, engine: Engine, piece: np.ndarray, progress: Progress, prior: str | None
    ) -> engines.Transcript:
        prompt = progress.texts[-1][-200:] if progress.texts else None
        result: engines.Transcript = await self._run(
            engine.transcribe, piece, progress.language, prompt
        )
        if progress.language is None:
            progress.language = result.language
            progress.language_probability = result.language_probability
            least = self.settings.whisper_min_language_probability
            sure = (result.language_probability or 0) >= least
            if prior and result.language != prior and not sure:
                # Whisper guesses poorly on a few seconds of speech; the customer's known
                # language is the better bet, and the guess is kept in the note.
                progress.note = (
                    f"language {prior} from the customer's profile; whisper guessed "
                    f"{result.language} at {100 * (result.language_probability or 0):.0f}%"
                )
                progress.language, progress.language_probability = prior, None
                result = await self._run(engine.transcribe, piece, prior, prompt)
        return result

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


_transcriber: Transcriber | None = None


def get_transcriber() -> Transcriber:
    global _transcriber
    if _transcriber is None:
        _transcriber = Transcriber(get_settings())
    return _transcriber


def set_transcriber(transcriber: Transcriber | None) -> None:
    """Use this transcriber in this process (tests share one loaded model)."""
    global _transcriber
    _transcriber = transcriber


def availability(settings: Settings) -> str | None:
    """Why no model can be loaded here, or None when one can (cheap: loads nothing)."""
    name = settings.whisper_engine
    if name == "none":
        return "transcription is switched off (HELIOGRAPH_WHISPER_ENGINE=none)"
    modules = {"faster-whisper": ["faster_whisper"], "openai-whisper": ["whisper", "torch"]}
    if name not in modules:
        return f"unknown whisper engine {name!r} (HELIOGRAPH_WHISPER_ENGINE)"
    for module in modules[name]:
        if importlib.util.find_spec(module) is None:
            return f"{name} is not installed (python package {module!r} is missing)"
    model_dir = Path(settings.whisper_model_dir)
    try:
        if name == "faster-whisper":
            weights.ct2_model(settings.whisper_model, model_dir)
        else:
            weights.openai_checkpoint(settings.whisper_model, model_dir, convert=False)
    except weights.WeightsNotFound as exc:
        return str(exc)
    if audio.ffmpeg_path() is None and importlib.util.find_spec("av") is None:
        return "ffmpeg is not installed to decode voice notes (apt-get install ffmpeg)"
    return None


def startup_check(settings: Settings) -> None:
    """Say once, at start-up, whether voice notes will be transcribed."""
    reason = availability(settings)
    if reason is None:
        log.info(
            "voice notes: %s, model %s (ffmpeg %s)",
            settings.whisper_engine,
            settings.whisper_model,
            "found" if audio.ffmpeg_path() else "missing: decoding with PyAV",
        )
    else:
        log.warning(
            "voice notes will not be transcribed: %s; they are kept and marked unavailable",
            reason,
        )
