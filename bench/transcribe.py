"""Speech to text: real-time factor and word error rate per engine and model size here.

The audio is made on this machine with espeak-ng (English, Spanish, French sentences and a
~45 s English note, the long one cut into ~30 s windows as the product does), decoded
with ffmpeg to 16 kHz. Every engine and model whose weights are on this machine runs:
faster-whisper (CTranslate2, int8 on CPU, float16 on CUDA) and openai-whisper (PyTorch,
on the same weights converted back, float32 on CPU, float16 on CUDA), on tiny.en and the
multilingual base. Each clip is transcribed once to warm up, then ``--repeat`` times.

- ``rtf``: transcription wall time / audio duration (below 1: faster than real time);
- ``wer``: word error rate against the spoken text, per language (tiny.en: English only);
- ``load_s``: loading the model (the first note after start-up waits this long).

The engine with the lowest RTF on the multilingual model, among those whose WER is within
0.05 of the best, is printed as the default (``HELIOGRAPH_WHISPER_ENGINE``).

    .venv/bin/python bench/transcribe.py                       # CPU, 2 threads
    .venv/bin/python bench/transcribe.py --device cuda         # a GPU machine
    .venv/bin/python bench/transcribe.py --engines faster-whisper --models base --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.utils.speech import LONG_EN, SPEECH  # noqa: E402
from tests.utils.wer import wer  # noqa: E402
from transcription import audio, engines  # noqa: E402

MODELS = {"tiny.en": ["en", "en-long"], "base": ["en", "es", "fr", "en-long"]}


def make_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    if not shutil.which("espeak-ng") or not shutil.which("ffmpeg"):
        sys.exit("bench/transcribe.py needs espeak-ng and ffmpeg (apt-get install ...)")
    clips: dict[str, tuple[Path, str]] = {}
    for lang, (voice, text) in SPEECH.items():
        path = root / f"{lang}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
        clips[lang] = (path, text)
    parts = []
    for i, line in enumerate(LONG_EN):
        part = root / f"long{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(part), line], check=True)
        parts.append(part)
    listing = root / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    long = root / "long.ogg"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
         "-i", str(listing), "-c:a", "libopus", "-b:a", "24k", str(long)],
        check=True,
    )  # fmt: skip
    clips["en-long"] = (long, " ".join(LONG_EN))
    return clips


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import ctranslate2

        info["ctranslate2"] = ctranslate2.__version__
        info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = round(
                torch.cuda.get_device_properties(0).total_memory / 2**30, 1
            )
    except ImportError:
        pass
    if device == "cuda" and "gpu" not in info and shutil.which("nvidia-smi"):
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        info["gpu"] = done.stdout.strip()
    return info


def transcribe(engine: engines.Engine, samples: Any, window_s: float) -> tuple[str, str | None]:
    """As the product does: ~30 s windows, the language of the first kept for the rest."""
    texts, language = [], None
    for cut in audio.windows(samples, window_s):
        result = engine.transcribe(audio.piece(samples, cut), language)
        language = language or result.language
        texts.append(result.text)
    return " ".join(texts), language


def run_one(
    name: str, model: str, args: argparse.Namespace, clips: dict[str, tuple[Path, str]]
) -> dict[str, Any] | None:
    config = engines.EngineConfig(
        model=model,
        model_dir=Path(args.model_dir),
        device=args.device,
        compute_type="int8" if args.device == "cpu" else "float16",
        threads=args.threads if args.device == "cpu" else 0,
        beam_size=args.beam_size,
    )
    started = time.perf_counter()
    try:
        engine = engines.load_engine(name, config)
    except engines.ModelUnavailable as exc:
        print(f"  {name:15} {model:8} unavailable: {exc}")
        return None
    load_s = time.perf_counter() - started
    row: dict[str, Any] = {"engine": name, "model": model, "load_s": round(load_s, 2)}
    total_audio = total_wall = 0.0
    for key in MODELS[model]:
        path, text = clips[key]
        samples = audio.decode_audio(str(path))
        transcribe(engine, samples, args.window_s)  # warm-up
        started = time.perf_counter()
        for _ in range(args.repeat):
            heard, language = transcribe(engine, samples, args.window_s)
        wall = (time.perf_counter() - started) / args.repeat
        duration = audio.duration_s(samples)
        total_audio += duration
        total_wall += wall
        row[key] = {
            "audio_s": round(duration, 2),
            "wall_s": round(wall, 3),
            "rtf": round(wall / duration, 3),
            "wer": round(wer(text, heard), 3),
            "language": language,
            "heard": heard,
        }
    row["rtf"] = round(total_wall / total_audio, 3)
    row["mean_wer"] = round(sum(row[k]["wer"] for k in MODELS[model]) / len(MODELS[model]), 3)
    print(
        f"  {name:15} {model:8} load {load_s:5.2f} s  RTF {row['rtf']:.3f}  "
        f"mean WER {row['mean_wer']:.3f}  "
        + "  ".join(f"{k} {row[k]['rtf']:.2f}/{row[k]['wer']:.2f}" for k in MODELS[model])
    )
    return row


def choose_default(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    multilingual = [r for r in rows if r["model"] == "base"] or rows
    if not multilingual:
        return None
    best_wer = min(r["mean_wer"] for r in multilingual)
    fit = [r for r in multilingual if r["mean_wer"] <= best_wer + 0.05]
    choice = min(fit, key=lambda r: r["rtf"])
    others = ", ".join(
        f"{r['engine']} RTF {r['rtf']:.3f} WER {r['mean_wer']:.3f}"
        for r in multilingual
        if r is not choice
    )
    reason = (
        f"{choice['engine']} ({choice['model']}): RTF {choice['rtf']:.3f}, mean WER "
        f"{choice['mean_wer']:.3f}" + (f"; against {others}" if others else "")
    )
    return {"engine": choice["engine"], "model": choice["model"], "why": reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per model")
    parser.add_argument("--engines", nargs="*", default=list(engines.ENGINES))
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--model-dir", default=str(ROOT / "var" / "models"))
    parser.add_argument("--out", default=None, help="default: bench/results/transcribe.json")
    args = parser.parse_args()

    info = device_info(args.device)
    print("device:", ", ".join(f"{k}={v}" for k, v in info.items()))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_corpus(Path(tmp))
        for model in args.models:
            for name in args.engines:
                row = run_one(name, model, args, clips)
                if row is not None:
                    rows.append(row)
    default = choose_default(rows)
    if default:
        print(f"default engine: {default['why']}")
    suffix = "" if args.device == "cpu" else f"-{args.device}"
    out = Path(args.out or ROOT / "bench" / "results" / f"transcribe{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": info,
                "beam_size": args.beam_size,
                "threads": args.threads,
                "results": rows,
                "default": default,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
