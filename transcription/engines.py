"""One small contract for speech-to-text, two whisper engines behind it.

- ``faster-whisper``: CTranslate2, int8 on CPU; the default: ``bench/transcribe.py`` on
  this project's 2-core machines, base model, measured a real-time factor of 0.15 against
  openai-whisper's 0.37 on the same weights, with no more word errors.
- ``openai-whisper``: the reference PyTorch implementation, on a ``.pt`` checkpoint.

An engine takes 16 kHz mono samples (``transcription.audio`` decodes them) and returns
the text with whisper's detected language. Nothing here downloads weights: a model is a
local path resolved by ``transcription.weights``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from transcription import weights


class ModelUnavailable(Exception):
    """No speech model can be loaded here (the message says why and what to install)."""


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    language_probability: float | None


class Engine(Protocol):
    name: str
    model: str  # what was loaded, for logs and the bench

    def transcribe(
        self, samples: np.ndarray, language: str | None = None, prompt: str | None = None
    ) -> Transcript: ...


@dataclass(frozen=True)
class EngineConfig:
    model: str  # a name (base, tiny.en) or a local path
    model_dir: Path  # where joined or converted weights are kept
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 0  # 0: the library's choice
    beam_size: int = 5


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(self, config: EngineConfig) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelUnavailable(
                "faster-whisper is not installed (pip install -e '.[whisper]')"
            ) from exc
        path = weights.ct2_model(config.model, config.model_dir)
        compute = config.compute_type if config.device == "cpu" else "float16"
        self.model = f"{config.model} ({path}, {compute})"
        self.beam_size = config.beam_size
        # local_files_only: a name that slipped through is never fetched from a hub.
        self._model = WhisperModel(
            str(path),
            device=config.device,
            compute_type=compute,
            cpu_threads=config.threads,
            local_files_only=True,
        )

    def transcribe(
        self, samples: np.ndarray, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        segments, info = self._model.transcribe(
            samples,
            language=language,
            beam_size=self.beam_size,
            initial_prompt=prompt,
            condition_on_previous_text=False,
        )
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        return Transcript(text, info.language, float(info.language_probability))


class OpenAIWhisperEngine:
    name = "openai-whisper"

    def __init__(self, config: EngineConfig) -> None:
        try:
            import torch
            import whisper
        except ImportError as exc:
            raise ModelUnavailable(
                "openai-whisper or torch is not installed (see the Makefile's whisper step)"
            ) from exc
        checkpoint = weights.openai_checkpoint(config.model, config.model_dir)
        if config.threads and config.device == "cpu":
            torch.set_num_threads(config.threads)
        self.model = f"{config.model} ({checkpoint})"
        self.device = config.device
        self.beam_size = config.beam_size
        # A path, never a name: load_model(name) would download from OpenAI's CDN.
        self._model = whisper.load_model(str(checkpoint), device=config.device)

    def transcribe(
        self, samples: np.ndarray, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        import whisper

        probability: float | None = 1.0 if language else None
        if language is None and self._model.is_multilingual:
            mel = whisper.log_mel_spectrogram(
                whisper.pad_or_trim(samples), self._model.dims.n_mels
            ).to(self._model.device)
            _, probs = self._model.detect_language(mel)
            language, probability = max(probs.items(), key=lambda kv: kv[1])  # type: ignore[union-attr]
        elif language is None:
            language, probability = "en", 1.0
        result = self._model.transcribe(
            samples,
            language=language,
            beam_size=self.beam_size,
            initial_prompt=prompt,
            condition_on_previous_text=False,
            fp16=self.device == "cuda",
            verbose=None,
        )
        return Transcript(str(result["text"]).strip(), language, probability)


# Engine name -> class; adding an engine is one class and one entry.
ENGINES: dict[str, type[FasterWhisperEngine] | type[OpenAIWhisperEngine]] = {
    FasterWhisperEngine.name: FasterWhisperEngine,
    OpenAIWhisperEngine.name: OpenAIWhisperEngine,
}


def load_engine(name: str, config: EngineConfig) -> Engine:
    """Load ``name`` on ``config``; any reason it cannot be done is a ModelUnavailable."""
    cls = ENGINES.get(name)
    if cls is None:
        raise ModelUnavailable(
            f"unknown whisper engine {name!r}; HELIOGRAPH_WHISPER_ENGINE is one of "
            f"{', '.join(ENGINES)} or none"
        )
    try:
        return cls(config)
    except ModelUnavailable:
        raise
    except weights.WeightsNotFound as exc:
        raise ModelUnavailable(str(exc)) from exc
    except Exception as exc:  # a corrupt file, an unsupported device, out of memory
        raise ModelUnavailable(f"{name} could not load {config.model!r}: {exc}") from exc
