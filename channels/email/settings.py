"""The email channel's settings (HELIOGRAPH_EMAIL_*, HELIOGRAPH_SMTP_*,
HELIOGRAPH_MAX_EMAIL_BYTES) and its demo values."""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field

from heliograph.settings import Section


class EmailSettings(Section):
    """Email. Inbound by SMTP listener and/or POST /webhooks/email; outbound by SMTP."""

    secret_fields: ClassVar[tuple[str, ...]] = ("email_webhook_secret",)

    email_address: str = Field(default="", description="Our support address (From:).")
    email_domain: str = Field(default="", description="For Message-IDs; from email_address.")
    email_webhook_secret: str = Field(default="", description="Bearer secret of /webhooks/email.")
    smtp_listen_host: str = Field(
        default="127.0.0.1", description="Where the SMTP listener listens."
    )
    smtp_listen_port: int = Field(default=0, description="0 = no SMTP listener.")
    smtp_host: str = Field(default="", description="Outbound SMTP relay.")
    smtp_port: int = Field(
        default=25, description="The relay's port (465: implicit TLS, the submissions port)."
    )
    smtp_username: str = Field(default="", description="The relay's login, if it wants one.")
    smtp_password: str = Field(default="", description="The relay's password.")
    smtp_starttls: bool = Field(default=False, description="STARTTLS on a plain port.")
    max_email_bytes: int = Field(default=10_485_760, description="Larger mail is refused.")
    # Email sender authentication (#14, channels/email/auth.py): mail that does not pass
    # never joins an existing customer's profile or thread; it opens an "unverified sender"
    # conversation under a profile of its own, which an agent can merge.
    email_auth: Literal["off", "trust-mta", "verify"] = Field(
        default="trust-mta",
        description="off: every mail joins by its From address. trust-mta: the "
        "Authentication-Results header (RFC 8601) of the MTA in front of us decides "
        "(DMARC pass, or else DKIM/SPF pass aligned with From); mail WITHOUT such a header "
        "joins as before (the MTA checked nothing, so there is no verdict) unless "
        "email_auth_required. verify: DKIM is checked here with dkimpy (DNS), for an SMTP "
        "listener that takes mail straight from the internet; Authentication-Results headers "
        "in the mail are ignored (the sender could have written them).",
    )
    email_authserv_id: str = Field(
        default="",
        description="trust-mta: the authserv-id of our MTA (e.g. mx.example.com); only its "
        "Authentication-Results are read, so one the sender forged is not. Empty: the "
        "topmost header (the one the last hop, our MTA, added). Set it whenever the SMTP "
        "listener can be reached from outside.",
    )
    email_auth_required: bool = Field(
        default=False,
        description="trust-mta: mail with no Authentication-Results (from the MTA above) is "
        "kept apart too. Turn on when the MTA adds the header to every mail.",
    )


def demo_env(sandbox_url: str) -> dict[str, str]:
    """The sandbox's SMTP sink (its port + 25) receives outbound mail; customers' mail comes
    in on the listener's port 2525 (``heliograph demo``)."""
    sink = (urlsplit(sandbox_url).port or 8900) + 25
    return {
        "HELIOGRAPH_EMAIL_ADDRESS": "support@heliograph.example",
        "HELIOGRAPH_EMAIL_WEBHOOK_SECRET": "demo-email-webhook-secret",
        "HELIOGRAPH_SMTP_HOST": "127.0.0.1",
        "HELIOGRAPH_SMTP_PORT": str(sink),
        "HELIOGRAPH_SMTP_LISTEN_PORT": "2525",
    }
