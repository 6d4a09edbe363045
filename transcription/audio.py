"""Decoding what channels deliver (OGG/Opus, AMR, MP3, M4A, WAV) to 16 kHz mono samples.

The ``ffmpeg`` command does the decoding, the way openai-whisper's own ``load_audio``
does (https://github.com/openai/whisper/blob/main/whisper/audio.py): one decoder for every
container and codec a phone produces. Where no ``ffmpeg`` binary is installed, PyAV (which
bundles FFmpeg's libraries and comes with faster-whisper) decodes instead.

Long notes are cut into windows of about ``window_s`` seconds at the quietest moment near
each boundary, so that no word is cut in half and each window is one bounded piece of work.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
# Below this RMS level (about -50 dBFS) a whole note is taken as silence.
SILENCE_RMS = 0.003


class AudioDecodeError(Exception):
    """The file could not be decoded as audio (the message says what the decoder said)."""


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def decode_audio(path: str, max_seconds: float | None = None) -> np.ndarray:
    """The audio in ``path`` as float32 samples in [-1, 1], mono, 16 kHz."""
    if ffmpeg_path() is not None:
        return _decode_ffmpeg(path, max_seconds)
    return _decode_pyav(path, max_seconds)


def _decode_ffmpeg(path: str, max_seconds: float | None) -> np.ndarray:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "0"]
    cmd += ["-i", path]
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds:.3f}"]
    cmd += ["-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-"]
    try:
        done = subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise AudioDecodeError("ffmpeg took longer than 120 s to decode the file") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise AudioDecodeError(f"ffmpeg could not decode it: {lines[-1] if lines else 'no output'}")
    return np.frombuffer(done.stdout, np.int16).astype(np.float32) / 32768.0


def _decode_pyav(path: str, max_seconds: float | None) -> np.ndarray:
    try:
        from faster_whisper.audio import decode_audio as av_decode
    except ImportError as exc:
        raise AudioDecodeError("neither ffmpeg nor PyAV is installed to decode audio") from exc
    try:
        samples = av_decode(path, sampling_rate=SAMPLE_RATE)
    except Exception as exc:
        raise AudioDecodeError(f"PyAV could not decode it: {exc}") from exc
    if max_seconds is not None:
        samples = samples[: int(max_seconds * SAMPLE_RATE)]
    return np.asarray(samples, dtype=np.float32)


def duration_s(samples: np.ndarray) -> float:
    return len(samples) / SAMPLE_RATE


def is_silent(samples: np.ndarray) -> bool:
    if len(samples) == 0:
        return True
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENCE_RMS


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float


def windows(samples: np.ndarray, window_s: float = 30.0, search_s: float = 4.0) -> list[Window]:
    """Cut points for long audio: about every ``window_s`` seconds, each moved to the
    quietest 50 ms frame in the last ``search_s`` seconds before it (a pause between words).
    Windows never exceed ``window_s`` (whisper's encoder sees 30 s at a time)."""
    total = len(samples)
    step = int(window_s * SAMPLE_RATE)
    frame = SAMPLE_RATE // 20
    cuts = [0]
    while total - cuts[-1] > step:
        hard = cuts[-1] + step
        lo = max(cuts[-1] + step // 2, hard - int(search_s * SAMPLE_RATE))
        region = samples[lo:hard]
        n = len(region) // frame
        if n == 0:
            cuts.append(hard)
            continue
        energy = np.square(region[: n * frame].reshape(n, frame), dtype=np.float64).mean(axis=1)
        cuts.append(lo + int(np.argmin(energy)) * frame + frame // 2)
    cuts.append(total)
    return [Window(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in itertools.pairwise(cuts)]


def piece(samples: np.ndarray, window: Window) -> np.ndarray:
    return samples[int(window.start_s * SAMPLE_RATE) : int(window.end_s * SAMPLE_RATE)]
