"""The channel packages the service is made of. Adding a channel is one line here
(docs/adding-a-channel.md); the web app, the sandbox, the demo and the configuration page
all read this tuple."""

from __future__ import annotations

from channels.base import ChannelPackage

# TRANSITION (#15): each package's package.py is added here as it is written.
PACKAGES: tuple[ChannelPackage, ...] = ()
