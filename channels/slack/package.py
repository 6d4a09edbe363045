"""The Slack channel as the service's registry lists it."""

from channels.base import ChannelPackage
from channels.slack import fake, fake_files, fake_responses, fake_team, routes
from channels.slack.settings import SlackSettings, demo_env

PACKAGE = ChannelPackage(
    name="slack",
    routes=routes.router,
    fakes=(fake.router, fake_team.router, fake_responses.router, fake_files.router),
    settings=SlackSettings,
    demo_env=demo_env,
    docs="docs/channels/slack.md",
)
