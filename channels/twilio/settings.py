"""Twilio's settings (HELIOGRAPH_TWILIO_*) and its demo values.

SMS and WhatsApp through Twilio are on when the account SID and auth token are set
(docs/channels/sms.md and whatsapp.md say where the console shows them).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from heliograph.settings import Section


class TwilioSettings(Section):
    """Twilio (SMS and WhatsApp). Enabled when the account SID and auth token are set."""

    secret_fields: ClassVar[tuple[str, ...]] = ("twilio_auth_token",)

    twilio_account_sid: str = Field(default="", description="The account SID (AC...).")
    twilio_auth_token: str = Field(
        default="", description="The account's auth token: signs the webhooks, sends replies."
    )
    twilio_sms_from: str = Field(default="", description="Our SMS number, E.164.")
    twilio_whatsapp_from: str = Field(default="", description="Our WhatsApp sender, E.164.")
    twilio_api_base: str = Field(
        default="https://api.twilio.com", description="Twilio REST base (the sandbox in tests)."
    )


def demo_env(sandbox_url: str) -> dict[str, str]:
    """A demo account whose REST API is the sandbox's Twilio fake (``heliograph demo``)."""
    return {
        "HELIOGRAPH_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
        "HELIOGRAPH_TWILIO_AUTH_TOKEN": "demo-twilio-auth-token",
        "HELIOGRAPH_TWILIO_SMS_FROM": "+15005550006",
        "HELIOGRAPH_TWILIO_WHATSAPP_FROM": "+14155238886",
        "HELIOGRAPH_TWILIO_API_BASE": f"{sandbox_url}/twilio",
    }
