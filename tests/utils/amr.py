"""Write AMR-NB files (what MMS voice notes are) with the system's opencore-amrnb encoder.

Debian's ffmpeg decodes AMR but ships no AMR encoder, so a test that needs an AMR file
encodes one itself: libopencore-amrnb (installed with ffmpeg, which decodes with it)
exports the 3GPP reference encoder (``Encoder_Interface_Encode``). The file is the
RFC 4867 storage format: ``#!AMR\\n`` then one frame per 20 ms of 8 kHz audio.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np

MR122 = 7  # 12.2 kbit/s, the mode phones use for voice


def encoder_library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("opencore-amrnb") or "libopencore-amrnb.so.0"
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def write_amr(samples_8k: np.ndarray, path: Path) -> Path:
    """``samples_8k``: float32 mono at 8 kHz in [-1, 1]."""
    lib = encoder_library()
    if lib is None:
        raise RuntimeError("libopencore-amrnb is not installed (apt-get install ffmpeg)")
    lib.Encoder_Interface_init.restype = ctypes.c_void_p
    lib.Encoder_Interface_Encode.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_short),
        ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int,
    ]  # fmt: skip
    lib.Encoder_Interface_exit.argtypes = [ctypes.c_void_p]
    pcm = np.clip(samples_8k * 32767, -32768, 32767).astype(np.int16)
    pcm = np.pad(pcm, (0, -len(pcm) % 160))
    state = lib.Encoder_Interface_init(0)
    out = (ctypes.c_ubyte * 64)()
    frames = [b"#!AMR\n"]
    try:
        for start in range(0, len(pcm), 160):
            frame = np.ascontiguousarray(pcm[start : start + 160])
            size = lib.Encoder_Interface_Encode(
                state, MR122, frame.ctypes.data_as(ctypes.POINTER(ctypes.c_short)), out, 0
            )
            frames.append(bytes(out[:size]))
    finally:
        lib.Encoder_Interface_exit(state)
    path.write_bytes(b"".join(frames))
    return path
