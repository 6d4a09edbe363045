"""The API channel as the service's registry lists it."""

from channels.api import fake, routes
from channels.api.settings import ApiSettings, demo_env
from channels.base import ChannelPackage

PACKAGE = ChannelPackage(
    name="api",
    routes=routes.router,
    fakes=(fake.router,),
    settings=ApiSettings,
    demo_env=demo_env,
    docs="docs/channels/api.md",
)
