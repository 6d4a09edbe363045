"""The whatsapp channel as the registry lists it: no routes, fake or settings of its own
(its two providers, ``twilio`` and ``whatsapp_cloud``, bring those, each in its own
package); importing it registers the sender that picks the provider for each reply."""

from channels.base import ChannelPackage

PACKAGE = ChannelPackage(name="whatsapp", docs="docs/channels/whatsapp.md")
