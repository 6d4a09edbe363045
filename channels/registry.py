"""The channel packages the service is made of. Adding a channel is one import and one
entry here (docs/adding-a-channel.md); the web app mounts their ``routes``, the sandbox
their ``fakes``, ``heliograph demo`` sets their ``demo_env`` and the configuration page
documents their ``settings``."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from channels.api.package import PACKAGE as API
from channels.base import ChannelPackage
from channels.email.package import PACKAGE as EMAIL
from channels.slack.package import PACKAGE as SLACK
from channels.telegram.package import PACKAGE as TELEGRAM
from channels.twilio.package import PACKAGE as TWILIO
from channels.whatsapp.package import PACKAGE as WHATSAPP
from channels.whatsapp_cloud.package import PACKAGE as WHATSAPP_CLOUD
from sandbox import app as sandbox

PACKAGES: tuple[ChannelPackage, ...] = (
    API,
    EMAIL,
    TELEGRAM,
    SLACK,
    TWILIO,
    WHATSAPP_CLOUD,
    WHATSAPP,
)


def demo_env(sandbox_url: str, packages: Sequence[ChannelPackage] | None = None) -> dict[str, str]:
    """Every package's demo values, its provider pointed at the sandbox on ``sandbox_url``."""
    env: dict[str, str] = {}
    for package in PACKAGES if packages is None else packages:
        env.update(package.demo_env(sandbox_url))
    return env


def sandbox_app(packages: Sequence[ChannelPackage] | None = None) -> FastAPI:
    """The sandbox server (``python -m sandbox``): the shell with every package's fakes."""
    chosen = PACKAGES if packages is None else packages
    return sandbox.create_app([fake for package in chosen for fake in package.fakes])
