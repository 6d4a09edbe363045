"""A LibreTranslate-compatible fake under ``/libretranslate`` for tests and the demo.

Point Heliograph at it with ``HELIOGRAPH_TRANSLATION_PROVIDER=libre`` and
``HELIOGRAPH_TRANSLATION_URL={sandbox}/libretranslate``. It answers like LibreTranslate
(https://libretranslate.com/docs): ``POST /translate`` (q, source, target, format, api_key;
as a query string, as deep-translator sends it, a form or JSON) -> ``{"translatedText"}``,
``GET /languages``, ``POST /detect``. Translations are deterministic: a small phrase
table (pt, es <-> en) for the demo, and otherwise a reversible marker, ``[pt] text``,
which translated back into its source language gives the text again. Failure plans
(``POST /_sandbox/fail {"provider": "libretranslate"}``) make it fail like a real server.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.core import read_params, state

router = APIRouter(prefix="/libretranslate", tags=["libretranslate"])

NAMES = {
    "en": "English",
    "pt": "Portuguese",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "ru": "Russian",
    "ms": "Malay",
    "ja": "Japanese",
    "tr": "Turkish",
}
# (language, text) pairs that mean the same; every pair translates both ways.
PHRASES: list[dict[str, str]] = [
    {"pt": "Olá, meu pedido ainda não chegou.", "en": "Hello, my order has not arrived yet."},
    {"pt": "Onde está meu pedido?", "en": "Where is my order?", "es": "¿Dónde está mi pedido?"},
    {"pt": "Obrigado!", "en": "Thank you!", "es": "¡Gracias!"},
    {"pt": "Onde está?", "en": "Where is it?", "es": "¿Dónde está?"},
    {"pt": "Meu pagamento falhou.", "en": "My payment failed.", "es": "Mi pago falló."},
    {"pt": "Seu pedido será enviado amanhã.", "en": "Your order ships tomorrow."},
    {"pt": "Obrigado pela sua paciência.", "en": "Thank you for your patience."},
]
_MARK = re.compile(r"^\[([a-z]{2,3})\] (.*)$", re.S)


def _key(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


_TABLE = {(lang, _key(text)): entry for entry in PHRASES for lang, text in entry.items()}


def guess(text: str) -> str:
    for (lang, key), _ in _TABLE.items():
        if key == _key(text):
            return lang
    marked = _MARK.match(text)
    return marked.group(1) if marked else "en"


def translate_text(text: str, source: str, target: str) -> str:
    if source == "auto":
        source = guess(text)
    if source == target:
        return text
    entry = _TABLE.get((source, _key(text)))
    if entry is not None and target in entry:
        return entry[target]
    marked = _MARK.match(text)
    if marked and marked.group(1) == source:
        return marked.group(2)  # a marker translation going back where it came from
    return f"[{target}] {text}"


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@router.post("/translate")
async def translate(request: Request) -> JSONResponse:
    failing = await state.maybe_fail("libretranslate")
    if failing is not None:
        return failing  # type: ignore[return-value]
    params: dict[str, Any] = {**dict(request.query_params), **await read_params(request)}
    q, source, target = params.get("q"), params.get("source", "auto"), params.get("target")
    if q is None:
        return _error("Invalid request: missing q parameter")
    if not target:
        return _error("Invalid request: missing target parameter")
    for code in (source, target):
        if code != "auto" and code not in NAMES:
            return _error(f"{code} is not supported")
    state.record("libretranslate", "translate", params)
    if isinstance(q, list):
        return JSONResponse({"translatedText": [translate_text(t, source, target) for t in q]})
    body: dict[str, Any] = {"translatedText": translate_text(str(q), source, target)}
    if source == "auto":
        body["detectedLanguage"] = {"confidence": 90.0, "language": guess(str(q))}
    return JSONResponse(body)


@router.get("/languages")
async def languages() -> list[dict[str, Any]]:
    codes = sorted(NAMES)
    return [{"code": c, "name": NAMES[c], "targets": [t for t in codes if t != c]} for c in codes]


@router.post("/detect")
async def detect(request: Request) -> JSONResponse:
    failing = await state.maybe_fail("libretranslate")
    if failing is not None:
        return failing  # type: ignore[return-value]
    params = {**dict(request.query_params), **await read_params(request)}
    q = params.get("q")
    if not q:
        return _error("Invalid request: missing q parameter")
    state.record("libretranslate", "detect", params)
    return JSONResponse([{"confidence": 90.0, "language": guess(str(q))}])
