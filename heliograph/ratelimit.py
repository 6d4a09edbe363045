"""Abuse limits, counted by the `limits` library (sliding-window counters).

Named limits, each a ``limits`` string in the settings (``rate_limit_<name>``; "" = off):
``webhook`` (per channel), ``api`` (per bearer token), ``failed_auth`` (401s per client
IP) and ``telegram_link`` (``/link`` attempts per chat). Counts live in the process
(``memory://``, the default) or in Redis (``redis://...``) so that every process of the
service shares them.

The two throughput limits count with a sliding-window counter: two counters per key
whatever the limit (a moving window keeps one entry per hit, 12,000 for a webhook). The
two small ones (``failed_auth``, ``telegram_link``) use a moving window, whose "try again
in" is exact: when the oldest attempt leaves the window. They get a storage of their own,
since the in-memory one's expiry pass over moving windows would otherwise run on every
webhook hit.

A limiter that cannot reach its storage lets requests through (and logs it): a Redis
outage must not take the service down with it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.storage import storage_from_string

from heliograph.settings import Settings, get_settings

log = logging.getLogger(__name__)

LIMIT_NAMES = ("webhook", "api", "failed_auth", "telegram_link")
_MOVING = ("failed_auth", "telegram_link")


class RateLimited(Exception):
    """Past the limit ``name`` for this key; the caller may try again in ``retry_after`` s."""

    def __init__(self, name: str, retry_after: int) -> None:
        super().__init__(f"too many requests ({name}); try again in {retry_after} s")
        self.name = name
        self.retry_after = retry_after


@dataclass
class _Limiter:
    settings: Settings
    strategies: dict[str, RateLimiter]
    items: dict[str, list[RateLimitItem]]


_limiter: _Limiter | None = None
# Limits that packages above the kernel own (e.g. the web app's failed sign-ins): name ->
# a function returning its ``limits`` string from that package's settings ("" = off).
_declared: dict[str, Callable[[], str]] = {}


def declare(name: str, spec: Callable[[], str]) -> None:
    """Add the limit ``name``, counted like ``failed_auth`` (a moving window, in the same
    storage, so every process shares it where the storage is Redis)."""
    global _limiter
    _declared[name] = spec
    _limiter = None


def _storage_uri(uri: str) -> str:
    # The asyncio flavour of whatever the operator wrote ("redis://" -> "async+redis://").
    return uri if uri.startswith("async+") else f"async+{uri}"


def _build(settings: Settings) -> _Limiter:
    uri = _storage_uri(settings.rate_limit_storage or "memory://")
    # redis-py, which is installed anyway, rather than limits' default client (coredis).
    options = {"implementation": "redispy"} if "redis" in uri.split("://")[0] else {}
    sliding = SlidingWindowCounterRateLimiter(storage_from_string(uri, **options))
    moving = MovingWindowRateLimiter(storage_from_string(uri, **options))
    items: dict[str, list[RateLimitItem]] = {}
    strategies: dict[str, RateLimiter] = {}
    specs = {name: getattr(settings, f"rate_limit_{name}") for name in LIMIT_NAMES}
    specs |= {name: spec() for name, spec in _declared.items()}
    for name, spec in specs.items():
        spec = spec.strip()
        items[name] = parse_many(spec) if spec and settings.rate_limit_enabled else []
        strategies[name] = sliding if name in LIMIT_NAMES and name not in _MOVING else moving
    return _Limiter(settings, strategies, items)


def _current() -> _Limiter:
    """The limiter for the current settings (rebuilt when they are reset, as tests do)."""
    global _limiter
    settings = get_settings()
    if _limiter is None or _limiter.settings is not settings:
        _limiter = _build(settings)
    return _limiter


def reset() -> None:
    """Forget the limiter, so the next check builds a fresh one: what a new process starts
    with (its counts in memory are gone; a shared store such as Redis keeps them)."""
    global _limiter
    _limiter = None


def enabled(name: str) -> bool:
    return bool(_current().items[name])


async def _retry_after(limiter: _Limiter, item: RateLimitItem, name: str, key: str) -> int:
    stats = await limiter.strategies[name].get_window_stats(item, name, key)
    return max(1, math.ceil(stats.reset_time - time.time()))


async def hit(name: str, key: str) -> None:
    """Count one attempt of ``name`` by ``key``; ``RateLimited`` past the limit."""
    limiter = _current()
    for item in limiter.items[name]:
        try:
            allowed = await limiter.strategies[name].hit(item, name, key)
            if not allowed:
                raise RateLimited(name, await _retry_after(limiter, item, name, key))
        except RateLimited:
            raise
        except Exception:  # the storage is down: let the request through (see above)
            log.warning("rate limit %s not checked: storage unreachable", name, exc_info=True)
            return


async def check(name: str, key: str) -> None:
    """``RateLimited`` if ``key`` is already past the limit ``name``; counts nothing."""
    limiter = _current()
    for item in limiter.items[name]:
        try:
            if not await limiter.strategies[name].test(item, name, key):
                raise RateLimited(name, await _retry_after(limiter, item, name, key))
        except RateLimited:
            raise
        except Exception:
            log.warning("rate limit %s not checked: storage unreachable", name, exc_info=True)
            return


async def record(name: str, key: str) -> None:
    """Count one event (e.g. a failed authentication) without refusing anything now."""
    limiter = _current()
    for item in limiter.items[name]:
        try:
            await limiter.strategies[name].hit(item, name, key)
        except Exception:
            log.warning("rate limit %s not counted: storage unreachable", name, exc_info=True)
            return


def minutes(seconds: int) -> int:
    """Seconds as whole minutes, rounded up (for messages to people)."""
    return max(1, math.ceil(seconds / 60))
