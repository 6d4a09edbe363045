"""Logging: JSON lines (or text for a terminal) that carry the request id and the job.

Every record gets ``request_id`` (and ``job_id``/``job_kind`` inside a job) from context
variables when they are set, through a log record factory, so any handler sees them (the
JSON formatter emits them as fields, the text one appends them). The web middleware
(``web.protection``) sets the request id per request; ``heliograph.jobs`` stores it with
every job enqueued under it and sets it again while the job runs, so the job's lines
carry the id of the request that caused it.

The per-request lines of libraries (httpx's "HTTP Request: POST ...", APScheduler's
"Running job ...", uvicorn's access log, aiogram's "Update id=... is handled") are at
WARNING unless ``HELIOGRAPH_LOG_LIBRARY_REQUESTS`` is on: at a few hundred requests a
second they would be most of the log and say nothing the metrics don't.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("heliograph_request_id", default=None)
_job_var: ContextVar[tuple[int, str] | None] = ContextVar("heliograph_job", default=None)

# Loggers that write one line per request or per job run at INFO.
NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "apscheduler.executors.default",
    "apscheduler.scheduler",
    "uvicorn.access",
    "aiogram.event",
)
# An incoming X-Request-ID is kept only if it is short and plain (it goes into logs,
# headers and the job table): a proxy's UUID or trace id, never arbitrary text.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HANDLER_MARK = "_heliograph_handler"


def request_id_from(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` if sane, else a fresh one."""
    if incoming and _SANE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


@contextmanager
def request_scope(request_id: str | None) -> Iterator[None]:
    """Log lines (and jobs enqueued) inside carry ``request_id``."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


@contextmanager
def job_scope(job_id: int, kind: str, request_id: str | None) -> Iterator[None]:
    """While a job runs: its id, kind and the request id it was enqueued under."""
    job_token = _job_var.set((job_id, kind))
    request_token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(request_token)
        _job_var.reset(job_token)


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    request_id = request_id_var.get()
    if request_id is not None:
        record.request_id = request_id
    job = _job_var.get()
    if job is not None:
        record.job_id, record.job_kind = job
    return record


if getattr(logging.getLogRecordFactory(), "__name__", "") != "_record_factory":
    logging.setLogRecordFactory(_record_factory)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request=... job=...]`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = []
        if (request_id := getattr(record, "request_id", None)) is not None:
            tags.append(f"request={request_id}")
        if (job_id := getattr(record, "job_id", None)) is not None:
            tags.append(f"job={job_id}:{getattr(record, 'job_kind', '')}")
        if not tags:
            return line
        head, sep, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{' '.join(tags)}]{sep}{rest}"


def json_formatter() -> logging.Formatter:
    """One JSON object per line: timestamp, level, logger, message and the context."""
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        # uvicorn's copy of each message with terminal colour codes in it
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def setup_logging(
    level: str | None = None,
    fmt: Literal["json", "text"] | None = None,
    library_requests: bool | None = None,
) -> None:
    """Configure the root logger from the settings (arguments override them). Safe to
    call again (``heliograph demo`` does, after choosing text): it replaces its own handler
    and leaves others (pytest's) alone."""
    settings = _settings_or_none()
    level = (level or (settings.log_level if settings else "INFO")).upper()
    fmt = fmt or (settings.log_format if settings else "json")
    if library_requests is None:
        library_requests = bool(settings and settings.log_library_requests)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(json_formatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if library_requests else logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _settings_or_none() -> Any:
    # Logging comes first: a bad setting is reported by the command, through the log.
    from heliograph.settings import get_settings

    try:
        return get_settings()
    except Exception:
        return None
