"""The API channel's settings (HELIOGRAPH_API_*) and its demo values."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from heliograph.settings import Section


class ApiSettings(Section):
    """Generic API channel (Chatwoot-style): signed inbound, signed outbound POSTs."""

    secret_fields: ClassVar[tuple[str, ...]] = ("api_inbound_secret", "api_outbound_secret")

    api_inbound_secret: str = Field(default="", description="HMAC key for POST /api/v1/inbound.")
    api_outbound_url: str = Field(default="", description="Where replies on the API channel go.")
    api_outbound_secret: str = Field(
        default="", description="HMAC key for outbound POSTs (defaults to the inbound secret)."
    )

    @property
    def outbound_secret(self) -> str:
        return self.api_outbound_secret or self.api_inbound_secret


def demo_env(sandbox_url: str) -> dict[str, str]:
    """The sandbox's receiver takes the replies (``heliograph demo``)."""
    return {
        "HELIOGRAPH_API_INBOUND_SECRET": "demo-api-secret",
        "HELIOGRAPH_API_OUTBOUND_URL": f"{sandbox_url}/api-receiver/replies",
    }
