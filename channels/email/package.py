"""The email channel as the service's registry lists it."""

from channels.base import ChannelPackage
from channels.email import fake, routes
from channels.email.settings import EmailSettings, demo_env

PACKAGE = ChannelPackage(
    name="email",
    routes=routes.router,
    fakes=(fake.router,),
    settings=EmailSettings,
    demo_env=demo_env,
    docs="docs/channels/email.md",
)
