"""Meta's WhatsApp Cloud API (a provider of the whatsapp channel) as the registry lists it."""

from channels.base import ChannelPackage
from channels.whatsapp_cloud import fake, routes
from channels.whatsapp_cloud.settings import WhatsAppCloudSettings, demo_env

PACKAGE = ChannelPackage(
    name="whatsapp_cloud",
    routes=routes.router,
    fakes=(fake.router,),
    settings=WhatsAppCloudSettings,
    demo_env=demo_env,
    docs="docs/channels/whatsapp.md",
)
