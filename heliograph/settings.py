"""One settings class for the whole service (env prefix ``HELIOGRAPH_``, optional ``.env``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "demo-secret", "secret"}


SECRET_FIELDS = ("events_api_token",)


class InsecureSettingsError(ValueError):
    """A secret still has a placeholder value outside demo mode."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HELIOGRAPH_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///var/heliograph.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    demo_mode: bool = Field(default=False, description="Allow placeholder secrets (make run).")
    host: str = Field(default="127.0.0.1", description="Address `heliograph serve` listens on.")
    port: int = Field(default=8000, description="Port `heliograph serve` listens on.")
    public_url: str = Field(default="", description="The URL providers call us on.")

    # A channel's own settings are in its package (channels/<name>/settings.py).
    outbound_timeout_s: float = Field(
        default=10.0, description="Timeout of one call to a provider's API (send, media)."
    )

    # Activity events from other platforms (POST /api/v1/events, crm_core.events).
    events_api_token: str = Field(
        default="",
        description="Bearer token a platform sends events with (lead/admin tokens work too).",
    )

    media_dir: str = Field(default="var/media", description="Where fetched attachments are kept.")
    max_body_bytes: int = Field(default=1_048_576, description="Largest accepted webhook body.")
    reopen_window_hours: float = Field(
        default=96.0,
        description="A message within this many hours of resolution reopens the conversation.",
    )

    # Idempotent POSTs (#14, web/idempotency.py).
    idempotency_ttl_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 365,
        description="How long an Idempotency-Key's first answer is kept and replayed; "
        "expired records are deleted hourly.",
    )

    # The provider sandbox (sandbox) that `make run` starts beside the service.
    sandbox_url: str = Field(
        default="http://127.0.0.1:8900",
        description="The provider sandbox (`heliograph demo`, `heliograph sandbox say`).",
    )

    # Durable jobs.
    worker_concurrency: int = Field(default=16, description="Jobs run at once per process.")
    worker_batch: int = Field(default=32, description="Jobs claimed per query.")
    worker_poll_s: float = Field(
        default=0.25, description="An idle worker looks for due jobs at least this often."
    )
    worker_share_under_load: float = Field(
        default=0.25,
        description="While webhooks are arriving, the share of this process's CPU its workers "
        "may spend running jobs (they always get it: background work never starves).",
    )
    worker_yield_lag_s: float = Field(
        default=0.02,
        description="Workers hold back to worker_share_under_load only while requests arrive "
        "and the event loop runs later than this (requests wait behind jobs); else they run "
        "unpaced.",
    )
    job_latency_target_s: float = Field(
        default=0.5,
        description="While requests arrive, background work's share of CPU grows from "
        "worker_share_under_load to all of it as the most urgent due job's wait reaches this.",
    )
    job_patience_s: float = Field(
        default=5.0,
        description="A due job of NORMAL priority (inbound translation, line and card "
        "refreshes) that has waited this long takes the next claim ahead of URGENT work "
        "(routing, the agents' posts, replies): under a load that keeps urgent jobs always "
        "due it still runs, this late at most. Shorter: fresher translations, slower posts.",
    )
    job_bulk_patience_s: float = Field(
        default=30.0,
        description="The same for BULK jobs (CRM passes, clean-up), ahead of both.",
    )
    health_job_age_s: float = Field(
        default=30.0,
        description="/healthz says degraded when the oldest due routing job has waited longer.",
    )
    job_lease_s: float = Field(
        default=60.0, description="A claimed job is queued again if its worker is silent this long."
    )
    job_max_attempts: int = Field(default=8, description="Tries before a job is dead.")
    job_backoff_base_s: float = Field(
        default=2.0, description="First retry delay; it doubles per try, with jitter."
    )
    job_backoff_max_s: float = Field(default=600.0, description="Longest retry delay.")
    run_workers: bool = Field(default=True, description="`serve` also runs workers.")
    run_scheduler: bool = Field(default=True, description="`serve` also runs the scheduler.")

    # Routing (routing/policy.py): who gets a conversation, and when it moves on.
    routing_require: list[Literal["language", "expertise"]] = Field(
        default_factory=list,
        description='Hard requirements among "language" and "expertise" (JSON list); the '
        "others are preferences.",
    )
    routing_capacity_per_channel: bool = Field(
        default=False, description="Count capacity per channel instead of across channels."
    )
    routing_unanswered_minutes: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 5, "high": 10, "normal": 15, "low": 60},
        description="Re-route an assignment with no agent reply after this long (0 = never).",
    )
    sla_first_response_minutes: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 15, "high": 30, "normal": 60, "low": 240},
        description="First-response target per priority: an open conversation with no agent "
        "answer after this long is an SLA breach (/hg sla, /pulse; 0 = no target).",
    )
    routing_away_on_missed: bool = Field(
        default=True, description="An agent re-routed for not replying is set away until active."
    )
    routing_idle_away_minutes: float = Field(
        default=0, description="Online but inactive this long counts as away (0 = off)."
    )
    routing_wait_notice: bool = Field(
        default=True, description="Tell a queued customer when we will answer, in their time."
    )
    routing_wait_notice_window_minutes: float = Field(
        default=60,
        ge=0,
        description="The wait notice answers only a customer whose last message is at most "
        "this old: an imported or old queue gets no notice out of the blue (0 = no limit).",
    )
    routing_vip_priority: Literal["low", "normal", "high", "urgent"] = Field(
        default="high", description="Lowest priority for a VIP."
    )
    routing_topic_keywords: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "billing": ["refund", "refunds", "charged", "invoice", "payment", "billing"],
            "technical": ["error", "bug", "crash", "login", "password", "not working"],
        },
        description='Topic tag -> keywords in inbound text; "word*" matches a prefix.',
    )
    routing_snapshot_ttl_s: float = Field(
        default=30.0, description="How long a process trusts its cached team loads."
    )
    routing_team_check_s: float = Field(
        default=1.0, description="How often a process checks its cached team for changes."
    )

    # Handoff (handoff/): how long a receiver has to acknowledge before it escalates.
    handoff_ack_minutes: float = Field(
        default=10, description="Re-route an unacknowledged handoff after this long (0 = never)."
    )
    handoff_messages: int = Field(default=10, description="Last messages in a context package.")

    # Voice notes, language detection and translation (transcription/, inbox/voice.py,
    # inbox/translation.py). Whisper weights are local files, never downloaded at run time.
    whisper_engine: str = Field(
        default="faster-whisper",
        description='"faster-whisper" (CTranslate2; the default, see bench/transcribe.py), '
        '"openai-whisper" (PyTorch) or "none".',
    )
    whisper_model: str = Field(
        default="base",
        description="A model name whose weights a package ships (base, tiny.en) or a local "
        "path: a CTranslate2 directory, or a .pt file for openai-whisper.",
    )
    whisper_model_dir: str = Field(
        default="var/models", description="Where joined and converted weights are kept."
    )
    whisper_device: str = Field(default="cpu", description='"cpu" or "cuda".')
    whisper_compute_type: str = Field(default="int8", description="faster-whisper on CPU.")
    whisper_threads: int = Field(default=0, description="CPU threads per model (0: auto).")
    whisper_workers: int = Field(default=1, description="Notes transcribed at once per process.")
    whisper_beam_size: int = Field(default=5, description="Beam search width when decoding.")
    whisper_window_s: float = Field(default=30.0, description="Long notes go in windows.")
    whisper_max_audio_s: float = Field(
        default=1800.0, description="Audio past this is not transcribed (the note says so)."
    )
    whisper_job_budget_s: float = Field(
        default=20.0, description="A job moves on to a fresh one after this long."
    )
    whisper_min_language_probability: float = Field(
        default=0.5, description="Below this, the customer's known language is used instead."
    )
    # Each candidate written in Latin or Cyrillic letters costs a worker process 25-50 MB of
    # lingua's models once a message in that script arrives; one that alone uses its script
    # (ar, hi, th, ko, ...) costs next to nothing (docs/voice-and-languages.md, #17).
    language_candidates: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: "en es pt fr de ru uk ms zh ja ko ar hi th".split(),
        description="ISO 639-1 codes text detection chooses among: a JSON list or codes "
        'separated by commas or spaces; "all" = every language lingua knows (75, about 1 GB '
        "per worker process). The default: the demo's languages and the ones written in "
        "their own script.",
    )
    language_detector: Literal["shared", "in_process"] = Field(
        default="shared",
        description='"shared": every process on the machine asks one detector process '
        "(started by the first that needs it, on language_detector_socket), which holds "
        'lingua\'s models once instead of once per process; "in_process": each worker '
        "process loads its own (about 230 MB for the default candidates).",
    )
    language_detector_socket: str = Field(
        default="var/language-detector.sock",
        description="The shared detector's Unix socket (one detector per path).",
    )
    language_detector_idle_exit_s: float = Field(
        default=600.0,
        gt=0,
        description="The shared detector exits after this long with no request (the next "
        "detection starts it again).",
    )
    language_min_confidence: float = Field(
        default=0.3,
        description="A guess with no known language must be this sure (and 15 points ahead).",
    )
    language_override_confidence: float = Field(
        default=0.9,
        description="A message under 4 words replaces the known (app's) language only this "
        "sure; longer ones follow transcription/language.py's calibrated rule.",
    )
    translation_enabled: bool = Field(default=True, description="Off: never translate.")
    # Translation goes to a third party only when the operator names one (#14: no default
    # provider a user did not choose). "none": messages are not translated, and say so.
    translation_provider: str = Field(
        default="none",
        description='"none" (the default: nothing is sent to a translator; messages show '
        '"off: no provider configured") or one deep-translator provider: libre (self-hosted, '
        "with translation_url; `make run` uses the sandbox's), google, deepl, microsoft, "
        "yandex, mymemory, qcri, papago, baidu, chatgpt.",
    )
    translation_url: str = Field(default="", description="LibreTranslate server base URL.")
    translation_api_key: str = Field(default="", description="The translation provider's key.")
    translation_api_secret: str = Field(default="", description="Papago/Baidu second key.")
    translation_options: dict[str, str | bool] = Field(
        default_factory=dict, description='More provider arguments, e.g. {"region": "westeu"}.'
    )
    translation_timeout_s: float = Field(
        default=10.0, description="Timeout of one call to the translation provider."
    )
    translation_agent_languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="What the team reads when the assignee has no languages (first: target).",
    )
    translation_reply_wait_s: float = Field(
        default=30.0,
        description="A reply waits this long for its translation, then goes out as written "
        "and the agent gets a note.",
    )

    # Abuse limits (heliograph/ratelimit.py, web/protection.py). Each limit is in the
    # `limits` syntax ("600/minute", "10/second;600/minute"); "" turns that one off.
    rate_limit_enabled: bool = Field(default=True, description="Off: no rate limit at all.")
    rate_limit_storage: str = Field(
        default="memory://",
        description='Where counts are kept: "memory://" (per process) or "redis://host:6379/0" '
        "(shared by every process of the service).",
    )
    rate_limit_webhook: str = Field(
        default="60000/minute",
        description="Provider webhooks, per channel (/webhooks/<channel>, /api/v1/inbound): "
        "high enough for a provider's real bursts (WhatsApp Cloud allows a number up to "
        "1,000 messages/s).",
    )
    rate_limit_api: str = Field(
        default="1200/minute", description="REST API requests per bearer token."
    )
    rate_limit_failed_auth: str = Field(
        default="30/minute",
        description="Answers 401 per client IP; past it the IP gets 429 before any check.",
    )
    rate_limit_telegram_link: str = Field(
        default="5/15 minutes", description="Telegram /link attempts per chat (a lockout)."
    )

    # Logs (heliograph/logs.py).
    log_level: str = Field(default="INFO", description="Root log level.")
    log_format: Literal["json", "text"] = Field(
        default="json",
        description='"json" (one object a line, for machines; serve and worker) or "text" '
        "(for a terminal; `make run` / `heliograph demo` use it).",
    )
    log_library_requests: bool = Field(
        default=False,
        description="Log the per-request lines of httpx, APScheduler, aiogram and uvicorn's "
        "access log (off: WARNING and up only).",
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.database_url.split("///", 1)[1])

    @field_validator("language_candidates", mode="before")
    @classmethod
    def _language_codes(cls, value: Any) -> list[str]:
        """Codes lingua knows, checked when the settings are read: a typo stops the
        process at start-up instead of failing every detection job."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else re.split(r"[\s,]+", text)
        codes = list(dict.fromkeys(str(c).strip().lower() for c in value if str(c).strip()))
        if codes == ["all"]:
            return codes
        if not codes:
            raise ValueError(
                "HELIOGRAPH_LANGUAGE_CANDIDATES: name the languages to detect (ISO 639-1 "
                'codes such as "en,es"), or "all"'
            )
        from lingua import Language

        known = {str(lang.iso_code_639_1.name).lower() for lang in Language.all()}
        unknown = [c for c in codes if c not in known]
        if unknown:
            raise ValueError(
                f"HELIOGRAPH_LANGUAGE_CANDIDATES: {', '.join(map(repr, unknown))} is not a "
                "language lingua detects; use ISO "
                f'639-1 codes ({" ".join(sorted(known))}) or "all" alone'
            )
        return codes

    @model_validator(mode="after")
    def _reject_placeholders(self) -> Settings:
        check_secrets(self, SECRET_FIELDS, self.demo_mode)
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()


class Section(BaseSettings):
    """Settings a package brings with it (a channel's keys, say), read from the same
    ``HELIOGRAPH_`` environment and ``.env`` as ``Settings``, so an operator sees one flat
    list of variables (docs/configuration.md is generated from ``Settings`` and every
    section). ``Section.get()`` caches the instance; ``reset_settings()`` forgets it.

    ``secret_fields`` name the fields that must not keep a placeholder outside demo mode."""

    model_config = SettingsConfigDict(env_prefix="HELIOGRAPH_", env_file=".env", extra="ignore")
    secret_fields: ClassVar[tuple[str, ...]] = ()
    _sections: ClassVar[list[type[Section]]] = []
    _cache: ClassVar[dict[type[Section], Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Section._sections.append(cls)

    @classmethod
    def get(cls) -> Self:
        found = Section._cache.get(cls)
        if found is None:
            found = Section._cache[cls] = cls()
        return found  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _reject_placeholders(self) -> Self:
        check_secrets(self, self.secret_fields, get_settings().demo_mode)
        return self


def sections() -> list[type[Section]]:
    """Every settings section declared by a package imported so far."""
    return list(Section._sections)


@contextmanager
def sections_declared_meanwhile() -> Iterator[None]:
    """Sections declared inside the block (a test's toy package, say) are taken out of
    ``sections()`` again when it ends, so nothing after it sees them."""
    before = list(Section._sections)
    try:
        yield
    finally:
        Section._sections[:] = before


def check_secrets(settings: BaseSettings, names: tuple[str, ...], demo_mode: bool) -> None:
    """A configured channel with a guessable secret is worse than a disabled one."""
    if demo_mode:
        return
    for name in names:
        value = str(getattr(settings, name)).lower()
        if value and (value in PLACEHOLDER_SECRETS or "demo" in value):
            raise InsecureSettingsError(
                f"HELIOGRAPH_{name.upper()} has a placeholder value; set a real secret "
                "or HELIOGRAPH_DEMO_MODE=1"
            )


def reset_settings() -> None:
    """Forget the cached settings and sections (tests and the CLI change the environment)."""
    get_settings.cache_clear()
    Section._cache.clear()
