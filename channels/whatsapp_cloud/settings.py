"""Meta's WhatsApp Cloud API settings (HELIOGRAPH_WHATSAPP_*) and its demo values."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from heliograph.settings import Section


class WhatsAppCloudSettings(Section):
    """WhatsApp Cloud API (Meta). Enabled when the access token and phone number id are set."""

    secret_fields: ClassVar[tuple[str, ...]] = (
        "whatsapp_access_token",
        "whatsapp_app_secret",
        "whatsapp_verify_token",
    )

    whatsapp_access_token: str = Field(
        default="", description="A system user's access token with whatsapp_business_messaging."
    )
    whatsapp_phone_number_id: str = Field(
        default="", description="The id of our business phone number (not the number itself)."
    )
    whatsapp_app_secret: str = Field(default="", description="Signs X-Hub-Signature-256.")
    whatsapp_verify_token: str = Field(default="", description="The GET verify handshake.")
    whatsapp_api_base: str = Field(
        default="https://graph.facebook.com", description="Graph API base (the sandbox in tests)."
    )
    whatsapp_api_version: str = Field(
        default="v24.0",
        description="Graph API version (Meta keeps each for about two years).",
    )


def demo_env(sandbox_url: str) -> dict[str, str]:
    """A demo business number whose Graph API is the sandbox's fake (``heliograph demo``)."""
    return {
        "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN": "demo-whatsapp-token",
        "HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
        "HELIOGRAPH_WHATSAPP_APP_SECRET": "demo-whatsapp-app-secret",
        "HELIOGRAPH_WHATSAPP_VERIFY_TOKEN": "demo-whatsapp-verify",
        "HELIOGRAPH_WHATSAPP_API_BASE": f"{sandbox_url}/whatsapp",
    }
