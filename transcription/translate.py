"""Machine translation through deep-translator, behind one call: ``translate(text, src, tgt)``.

The provider is a setting (``HELIOGRAPH_TRANSLATION_PROVIDER``): none by default (the
inbox translates nothing until an operator names one), Google (no key), LibreTranslate
(``HELIOGRAPH_TRANSLATION_URL``: a self-hosted server, and the
sandbox's fake in tests and the demo), DeepL, Microsoft, Yandex, MyMemory, QCRI, Papago,
Baidu, ChatGPT: every sentence translator deep-translator offers (Pons and Linguee
translate single words, so they are left out). Keys come from
``HELIOGRAPH_TRANSLATION_API_KEY`` / ``_API_SECRET``; anything else a provider takes
(DeepL's ``use_free_api``, Microsoft's ``region``) from ``HELIOGRAPH_TRANSLATION_OPTIONS``.

deep-translator uses blocking ``requests`` calls with no timeout of their own, so each call
runs in a small thread pool of its own and is given up after ``translation_timeout_s``;
a provider that timed out is left alone for as long again, and calls beyond the pool's
size fail at once, so an unreachable provider costs seconds, not every worker's slot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = (
    "google",
    "libre",
    "deepl",
    "microsoft",
    "yandex",
    "mymemory",
    "qcri",
    "papago",
    "baidu",
    "chatgpt",
)


class TranslationError(Exception):
    """The provider failed for a passing reason (down, slow, rate limited): retry later."""


class TranslationRefused(TranslationError):
    """Retrying cannot help (language pair unsupported, bad key, unknown provider)."""


@dataclass(frozen=True)
class ProviderConfig:
    provider: str = "google"
    url: str = ""  # LibreTranslate (or any self-hosted) base URL
    api_key: str = ""
    api_secret: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 10.0


def _kwargs(config: ProviderConfig) -> dict[str, Any]:
    key, secret = config.api_key, config.api_secret
    by_provider: dict[str, dict[str, Any]] = {
        "libre": {
            "api_key": key or "none",  # a self-hosted server without keys ignores it
            "custom_url": (config.url.rstrip("/") + "/") if config.url else None,
        },
        "deepl": {"api_key": key},
        "microsoft": {"api_key": key},
        "yandex": {"api_key": key},
        "qcri": {"api_key": key},
        "chatgpt": {"api_key": key},
        "papago": {"client_id": key, "secret_key": secret},
        "baidu": {"appid": key, "appkey": secret},
    }
    return {**by_provider.get(config.provider, {}), **config.options}


def build(config: ProviderConfig, source: str, target: str) -> Any:
    """The deep-translator object for one language pair."""
    import deep_translator as dt
    from deep_translator import exceptions as dx

    classes: dict[str, Callable[..., Any]] = {
        "google": dt.GoogleTranslator,
        "libre": dt.LibreTranslator,
        "deepl": dt.DeeplTranslator,
        "microsoft": dt.MicrosoftTranslator,
        "yandex": dt.YandexTranslator,
        "mymemory": dt.MyMemoryTranslator,
        "qcri": dt.QcriTranslator,
        "papago": dt.PapagoTranslator,
        "baidu": dt.BaiduTranslator,
        "chatgpt": dt.ChatGptTranslator,
    }
    cls = classes.get(config.provider)
    if cls is None:
        raise TranslationRefused(
            f"unknown translation provider {config.provider!r}; "
            f"HELIOGRAPH_TRANSLATION_PROVIDER is one of {', '.join(PROVIDERS)}"
        )
    try:
        return cls(source=source, target=target, **_kwargs(config))
    except (dx.LanguageNotSupportedException, dx.InvalidSourceOrTargetLanguage) as exc:
        raise TranslationRefused(f"{config.provider} cannot translate {source}->{target}") from exc
    except dx.ApiKeyException as exc:
        raise TranslationRefused(
            f"{config.provider} needs an API key (HELIOGRAPH_TRANSLATION_API_KEY)"
        ) from exc


def translate_sync(config: ProviderConfig, text: str, source: str, target: str) -> str:
    from deep_translator import exceptions as dx

    translator = build(config, source, target)
    try:
        result = translator.translate(text)
    except dx.AuthorizationException as exc:
        raise TranslationRefused(f"{config.provider} refused the API key") from exc
    except (dx.NotValidPayload, dx.NotValidLength) as exc:
        raise TranslationRefused(f"{config.provider} cannot take this text: {exc}") from exc
    except Exception as exc:  # server errors, 429s, connection errors, odd answers
        raise TranslationError(f"{config.provider}: {type(exc).__name__}: {exc}"[:300]) from exc
    if not isinstance(result, str) or not result.strip():
        raise TranslationError(f"{config.provider} returned no translation")
    return result


POOL_SIZE = 4
_pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="translate")
_busy = threading.BoundedSemaphore(POOL_SIZE)
# provider -> monotonic time until which it is not called: after a call hung past its
# timeout its thread is still blocked, so the next calls fail at once instead of piling
# up behind it (a worker slot each) while the provider is unreachable.
_resting: dict[str, float] = {}


async def translate(config: ProviderConfig, text: str, source: str, target: str) -> str:
    """``text`` from ``source`` to ``target`` (ISO 639-1), off the event loop."""
    until = _resting.get(config.provider, 0.0)
    if time.monotonic() < until:
        raise TranslationError(
            f"{config.provider} is not answering (a call timed out); next try in "
            f"{until - time.monotonic():.0f} s"
        )
    if not _busy.acquire(blocking=False):
        raise TranslationError(f"{config.provider}: {POOL_SIZE} calls still waiting for it")
    loop = asyncio.get_running_loop()

    def call() -> str:
        try:
            return translate_sync(config, text, source, target)
        finally:
            _busy.release()

    future = loop.run_in_executor(_pool, call)
    try:
        return await asyncio.wait_for(future, timeout=config.timeout_s)
    except TimeoutError as exc:
        _resting[config.provider] = time.monotonic() + config.timeout_s
        raise TranslationError(
            f"{config.provider} did not answer within {config.timeout_s:g} s"
        ) from exc
