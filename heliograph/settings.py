"""One settings class for the whole service (env prefix ``HELIOGRAPH_``, optional ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "demo-secret", "secret"}


SECRET_FIELDS = (
    "api_inbound_secret",
    "api_outbound_secret",
    "telegram_bot_token",
    "telegram_webhook_secret",
    "slack_bot_token",
    "slack_signing_secret",
    "twilio_auth_token",
    "whatsapp_access_token",
    "whatsapp_app_secret",
    "whatsapp_verify_token",
    "email_webhook_secret",
)


class InsecureSettingsError(ValueError):
    """A secret still has a placeholder value outside demo mode."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HELIOGRAPH_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///var/heliograph.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    demo_mode: bool = Field(default=False, description="Allow placeholder secrets (make run).")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = Field(default="", description="The URL providers call us on.")

    # Generic API channel (Chatwoot-style): signed inbound, signed outbound POSTs.
    api_inbound_secret: str = Field(default="", description="HMAC key for POST /api/v1/inbound.")
    api_outbound_url: str = Field(default="", description="Where replies on the API channel go.")
    api_outbound_secret: str = Field(
        default="", description="HMAC key for outbound POSTs (defaults to the inbound secret)."
    )
    outbound_timeout_s: float = 10.0

    media_dir: str = Field(default="var/media", description="Where fetched attachments are kept.")
    max_body_bytes: int = Field(default=1_048_576, description="Largest accepted webhook body.")
    reopen_window_hours: float = Field(
        default=96.0,
        description="A message within this many hours of resolution reopens the conversation.",
    )

    # Telegram (aiogram). Enabled when the bot token is set.
    telegram_bot_token: str = ""
    telegram_webhook_secret: str = Field(
        default="", description="X-Telegram-Bot-Api-Secret-Token expected on webhooks."
    )
    telegram_api_base: str = Field(
        default="https://api.telegram.org", description="Bot API server (the sandbox in tests)."
    )
    telegram_polling: bool = Field(
        default=False, description="Fetch updates with getUpdates, no public URL needed."
    )

    # Slack (slack-bolt). Enabled when the bot token and signing secret are set.
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_api_base: str = Field(
        default="https://slack.com/api/", description="Web API base, with its trailing slash."
    )

    # Twilio (SMS and WhatsApp). Enabled when the account SID and auth token are set.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_sms_from: str = Field(default="", description="Our SMS number, E.164.")
    twilio_whatsapp_from: str = Field(default="", description="Our WhatsApp sender, E.164.")
    twilio_api_base: str = Field(
        default="https://api.twilio.com", description="Twilio REST base (the sandbox in tests)."
    )

    # WhatsApp Cloud API (Meta). Enabled when the access token and phone number id are set.
    whatsapp_access_token: str = ""
    whatsapp_phone_number_id: str = ""
    whatsapp_app_secret: str = Field(default="", description="Signs X-Hub-Signature-256.")
    whatsapp_verify_token: str = Field(default="", description="The GET verify handshake.")
    whatsapp_api_base: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"

    # Email. Inbound by SMTP listener and/or POST /webhooks/email; outbound by SMTP.
    email_address: str = Field(default="", description="Our support address (From:).")
    email_domain: str = Field(default="", description="For Message-IDs; from email_address.")
    email_webhook_secret: str = Field(default="", description="Bearer secret of /webhooks/email.")
    smtp_listen_host: str = "127.0.0.1"
    smtp_listen_port: int = Field(default=0, description="0 = no SMTP listener.")
    smtp_host: str = Field(default="", description="Outbound SMTP relay.")
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    max_email_bytes: int = Field(default=10_485_760, description="Larger mail is refused.")

    # The provider sandbox (bots/sandbox) that `make run` starts beside the service.
    sandbox_url: str = "http://127.0.0.1:8900"

    # Durable jobs.
    worker_concurrency: int = 16
    worker_batch: int = 32
    worker_poll_s: float = 0.25
    job_lease_s: float = 60.0
    job_max_attempts: int = 8
    job_backoff_base_s: float = 2.0
    job_backoff_max_s: float = 600.0
    run_workers: bool = Field(default=True, description="`serve` also runs workers.")
    run_scheduler: bool = Field(default=True, description="`serve` also runs the scheduler.")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def outbound_secret(self) -> str:
        return self.api_outbound_secret or self.api_inbound_secret

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.database_url.split("///", 1)[1])

    @model_validator(mode="after")
    def _reject_placeholders(self) -> Settings:
        # A configured channel with a guessable secret is worse than a disabled one.
        if self.demo_mode:
            return self
        for name in SECRET_FIELDS:
            value = str(getattr(self, name)).lower()
            if value and (value in PLACEHOLDER_SECRETS or "demo" in value):
                raise InsecureSettingsError(
                    f"HELIOGRAPH_{name.upper()} has a placeholder value; set a real secret "
                    "or HELIOGRAPH_DEMO_MODE=1"
                )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
