"""Twilio (it carries the sms and whatsapp channels) as the service's registry lists it."""

from channels.base import ChannelPackage
from channels.twilio import fake, routes
from channels.twilio.settings import TwilioSettings, demo_env

PACKAGE = ChannelPackage(
    name="twilio",
    routes=routes.router,
    fakes=(fake.router,),
    settings=TwilioSettings,
    demo_env=demo_env,
    docs="docs/channels/sms.md",
)
