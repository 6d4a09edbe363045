"""The "whatsapp" channel, carried by Twilio or by Meta's Cloud API.

A customer's WhatsApp is their phone number, whichever provider our business number sits
with: one identity, one consent (STOP), one conversation, one history. So both providers
store on "whatsapp", and this module picks the provider for each reply: the one the customer
last wrote through (it is their business number they expect the answer from, and its
24-hour window that is open), found from the reply's context, the stored payload of their
latest message. When that provider is no longer configured (say after moving the number from
Twilio to the Cloud API), the configured one answers. Nothing outside ``channels/`` needs to
know.
"""

from __future__ import annotations

from channels import twilio, whatsapp_cloud
from channels.base import ChannelAdapter
from inbox.media import FetchedMedia, MediaRef, register_fetcher
from inbox.outbox import DeliveryRefused, DeliveryResult, OutboundMessage, register_sender


def provider_for(message: OutboundMessage) -> ChannelAdapter:
    context = message.reply_context or {}
    configured: list[ChannelAdapter] = []
    if whatsapp_cloud.channel.enabled():
        configured.append(whatsapp_cloud.channel)
    if twilio.whatsapp_enabled():
        configured.append(twilio.channel)
    if whatsapp_cloud.is_cloud_context(context) and whatsapp_cloud.channel in configured:
        return whatsapp_cloud.channel
    if twilio.is_twilio_context(context) and twilio.channel in configured:
        return twilio.channel
    if configured:
        return configured[0]
    raise DeliveryRefused(
        "no WhatsApp provider is configured: set HELIOGRAPH_WHATSAPP_ACCESS_TOKEN and "
        "_PHONE_NUMBER_ID (Cloud API) or HELIOGRAPH_TWILIO_* with HELIOGRAPH_TWILIO_WHATSAPP_FROM"
    )


async def send(message: OutboundMessage) -> DeliveryResult:
    return await provider_for(message).send(message)


async def fetch_media(ref: MediaRef) -> FetchedMedia:
    """Twilio names media by URL, the Cloud API by media id."""
    if ref.url:
        return await twilio.fetch_media(ref)
    return await whatsapp_cloud.fetch_media(ref)


register_sender("whatsapp", send)
register_fetcher("whatsapp", fetch_media)
