"""The Telegram channel's settings (HELIOGRAPH_TELEGRAM_*) and its demo values."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from heliograph.settings import Section


class TelegramSettings(Section):
    """Telegram (aiogram). Enabled when the bot token is set."""

    secret_fields: ClassVar[tuple[str, ...]] = ("telegram_bot_token", "telegram_webhook_secret")

    telegram_bot_token: str = Field(default="", description="The bot's token from @BotFather.")
    telegram_webhook_secret: str = Field(
        default="", description="X-Telegram-Bot-Api-Secret-Token expected on webhooks."
    )
    telegram_api_base: str = Field(
        default="https://api.telegram.org", description="Bot API server (the sandbox in tests)."
    )
    telegram_polling: bool = Field(
        default=False, description="Fetch updates with getUpdates, no public URL needed."
    )


def demo_env(sandbox_url: str) -> dict[str, str]:
    """The bot talks to the sandbox's Bot API (``heliograph demo``)."""
    return {
        "HELIOGRAPH_TELEGRAM_BOT_TOKEN": "123456:DEMO-telegram-token",
        "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET": "demo-telegram-secret",
        "HELIOGRAPH_TELEGRAM_API_BASE": f"{sandbox_url}/telegram",
    }
