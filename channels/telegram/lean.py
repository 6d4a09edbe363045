"""aiogram, imported without building every Telegram type up front (issue #17).

``aiogram.types`` ends its import with ``model_rebuild()`` on each of its ~400 pydantic
models, which builds every validator and serializer at once: about 100 MB of a process's
memory (pydantic-core keeps a copy of each nested model's schema inside every model that
holds it), whether or not the process ever sees a Telegram update
(https://github.com/aiogram/aiogram/issues/1513, open). The models are declared with
``defer_build=True``; only that final loop defeats it.

Here the loop runs with ``model_rebuild`` turned into "remember the names": each
forward reference the loop would resolve (``"User"``, ``"Message"``, ...) is put into the
globals of the model's own module, where pydantic looks first, and the model stays
unbuilt. Pydantic builds a model the first time it is used (parsing an ``Update``, a
``sendMessage``), with the same names, so the result is the same; a process pays for the
types it uses (``Update`` and what it holds: about 4 MB).

Use aiogram's names from here (``from channels.telegram import lean``; ``lean.Update``),
never from ``aiogram`` directly in the service, so this module is the first to import
aiogram. If aiogram was imported before (a test, a tool), nothing changes: its types are
already built.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

_rebuild = BaseModel.model_rebuild.__func__  # type: ignore[attr-defined]


def _remember_names(
    cls: type[BaseModel],
    *,
    force: bool = False,
    raise_errors: bool = True,
    _parent_namespace_depth: int = 2,
    _types_namespace: Mapping[str, Any] | None = None,
) -> bool | None:
    if _types_namespace is None or force:
        return _rebuild(
            cls,
            force=force,
            raise_errors=raise_errors,
            _parent_namespace_depth=_parent_namespace_depth + 1,
            _types_namespace=_types_namespace,
        )
    module = vars(sys.modules[cls.__module__])
    for name, value in _types_namespace.items():
        module.setdefault(name, value)
    return None


# Where each name comes from. Nothing of aiogram is imported until a name is first asked
# for (``lean.Bot``, ``lean.Update``): importing aiogram takes ~1.5 s of CPU, which every
# process (a web server, a worker, each CLI command) paid at start-up whether or not a
# Telegram bot is configured. ``load()`` imports it all at once (the Telegram channel's
# start-up calls it when a bot token is set, so no webhook waits for it).
_SOURCES = {
    "Bot": "aiogram",
    "AiohttpSession": "aiogram.client.session.aiohttp",
    "TelegramAPIServer": "aiogram.client.telegram",
    "AiogramError": "aiogram.exceptions",
    "TelegramAPIError": "aiogram.exceptions",
    "TelegramBadRequest": "aiogram.exceptions",
    "TelegramConflictError": "aiogram.exceptions",
    "TelegramEntityTooLarge": "aiogram.exceptions",
    "TelegramForbiddenError": "aiogram.exceptions",
    "TelegramNetworkError": "aiogram.exceptions",
    "TelegramRetryAfter": "aiogram.exceptions",
    "TelegramServerError": "aiogram.exceptions",
    "BufferedInputFile": "aiogram.types",
    "Message": "aiogram.types",
    "ReplyParameters": "aiogram.types",
    "Update": "aiogram.types",
    "TokenValidationError": "aiogram.utils.token",
}

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import (
        AiogramError,
        TelegramAPIError,
        TelegramBadRequest,
        TelegramConflictError,
        TelegramEntityTooLarge,
        TelegramForbiddenError,
        TelegramNetworkError,
        TelegramRetryAfter,
        TelegramServerError,
    )
    from aiogram.types import BufferedInputFile, Message, ReplyParameters, Update
    from aiogram.utils.token import TokenValidationError

__all__ = [
    "AiogramError",
    "AiohttpSession",
    "Bot",
    "BufferedInputFile",
    "Message",
    "ReplyParameters",
    "TelegramAPIError",
    "TelegramAPIServer",
    "TelegramBadRequest",
    "TelegramConflictError",
    "TelegramEntityTooLarge",
    "TelegramForbiddenError",
    "TelegramNetworkError",
    "TelegramRetryAfter",
    "TelegramServerError",
    "TokenValidationError",
    "Update",
]


def load() -> None:
    """Import aiogram (its types left unbuilt) and bind every name here."""
    if "aiogram.types" not in sys.modules:
        BaseModel.model_rebuild = classmethod(_remember_names)  # type: ignore[method-assign,assignment]
        try:
            import aiogram.types  # noqa: F401
        finally:
            BaseModel.model_rebuild = classmethod(_rebuild)  # type: ignore[method-assign,assignment]
    for name, module in _SOURCES.items():
        globals()[name] = getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:
    """The first use of an aiogram name imports aiogram (PEP 562)."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load()
    return globals()[name]
