"""The provider sandbox (``python -m sandbox``, the fakes of every provider) in tests.

A test module's sandboxes are started by ``Sandboxes``, one process per distinct
environment, and stopped when the module ends; the fixtures in ``tests/conftest.py``
(``sandbox_service``, ``sandbox_url``, ``sandbox``) start the module's own from its
``SANDBOX_ENV``, and a helper that needs the fake Bot API (``telegram_team``) asks for
``TELEGRAM_ENV``'s, which is the same process where the module's env is the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from tests.utils.http import TELEGRAM_TOKEN
from tests.utils.processes import Service, free_port, start_sandbox
from tests.utils.signing import SECRET

# The fake Bot API accepts this token; the fake API receiver checks replies' signatures.
TELEGRAM_ENV = {"HELIOGRAPH_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN}
API_ENV = {"HELIOGRAPH_API_INBOUND_SECRET": SECRET}


class Sandboxes:
    """The sandbox processes of one test module, by environment."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._running: dict[frozenset[tuple[str, str]], Service] = {}

    def service(self, env: Mapping[str, str]) -> Service:
        """The sandbox started with ``env`` (started now if it is not running yet)."""
        key = frozenset(env.items())
        if key not in self._running:
            log = self._tmp.mktemp("sandbox") / "sandbox.log"
            self._running[key] = start_sandbox(free_port(), env, log)
        return self._running[key]

    def url(self, env: Mapping[str, str]) -> str:
        """Its base URL (``Service.url`` is its health's, under ``/_sandbox``)."""
        return base_url(self.service(env))

    def stop(self) -> None:
        for service in self._running.values():
            service.stop()
        self._running.clear()


def base_url(service: Service) -> str:
    return service.url.removesuffix("/_sandbox")


async def reset(http: httpx.AsyncClient, paths: tuple[str, ...]) -> None:
    """Forget the recorded calls, and ``DELETE`` each of ``paths`` (a fake's state, its
    failure mode: ``/_sandbox/telegram``, ``/_sandbox/fail?provider=telegram``)."""
    await http.delete("/_sandbox/calls")
    for path in paths:
        (await http.delete(path)).raise_for_status()


class Receiver:
    """The sandbox's receiver for the API channel's replies: what arrived, and failing
    on demand (a module's ``SANDBOX_ENV`` is ``API_ENV``: it checks their signatures)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=5)

    async def replies(self) -> list[dict[str, Any]]:
        calls = (await self.http.get("/_sandbox/calls", params={"provider": "api"})).json()
        return [c["params"] for c in sorted(calls, key=lambda c: c["seq"])]

    async def fail(self, mode: str, seconds: float, retry_after: int = 1) -> None:
        body = {"provider": "api", "mode": mode, "seconds": seconds, "retry_after": retry_after}
        (await self.http.post("/_sandbox/fail", json=body)).raise_for_status()

    async def recover(self) -> None:
        (await self.http.delete("/_sandbox/fail", params={"provider": "api"})).raise_for_status()
