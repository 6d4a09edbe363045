"""The Telegram channel as the service's registry lists it."""

from channels.base import ChannelPackage
from channels.telegram import fake, routes
from channels.telegram.settings import TelegramSettings, demo_env

PACKAGE = ChannelPackage(
    name="telegram",
    routes=routes.router,
    fakes=(fake.router,),
    settings=TelegramSettings,
    demo_env=demo_env,
    docs="docs/channels/telegram.md",
)
