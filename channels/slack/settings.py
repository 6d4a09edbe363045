"""The Slack channel's settings (HELIOGRAPH_SLACK_*) and its demo values."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from heliograph.settings import Section


class SlackSettings(Section):
    """Slack (slack-bolt). Enabled when the bot token and signing secret are set. The same
    app carries the agents' side (surfaces/slack_threads.py): the inbox channel and where
    an assigned conversation's thread goes."""

    secret_fields: ClassVar[tuple[str, ...]] = ("slack_bot_token", "slack_signing_secret")

    slack_bot_token: str = Field(
        default="", description="Bot User OAuth Token (xoxb-...) of the Slack app."
    )
    slack_signing_secret: str = Field(
        default="", description="Signing Secret of the Slack app; checks X-Slack-Signature."
    )
    slack_api_base: str = Field(
        default="https://slack.com/api/", description="Web API base, with its trailing slash."
    )
    # Agents in Slack (surfaces/slack_threads.py): one parent message per conversation.
    slack_inbox_channel: str = Field(
        default="", description="Channel id where conversation parents are posted ('channel')."
    )
    slack_agent_threads: Literal["channel", "dm", "off"] = Field(
        default="channel",
        description="Where an assigned conversation's thread goes: the inbox channel, the "
        "agent's DM with the app, or nowhere.",
    )


def demo_env(sandbox_url: str) -> dict[str, str]:
    """The app talks to the sandbox's Web API (``heliograph demo``)."""
    return {
        "HELIOGRAPH_SLACK_BOT_TOKEN": "xoxb-demo-slack-token",
        "HELIOGRAPH_SLACK_SIGNING_SECRET": "demo-slack-signing-secret",
        "HELIOGRAPH_SLACK_API_BASE": f"{sandbox_url}/slack/api/",
    }
