"""The contract every channel adapter keeps, the request view its routes build, and the
registry of adapters.

Rasa's habit (rasa/core/channels/channel.py): one small class per provider behind one
interface, found by name in a registry, so nothing outside ``channels/`` branches on a
channel's name. Like Rasa's ``InputChannel.blueprint()``, each channel package brings its
own webhook routes (``routes.py``, declared in its ``package.py``); unlike Rasa, every
adapter verifies its provider's signature, failing closed.

A route does the same four steps everywhere: ``hook: Hook`` (the body, read up to
HELIOGRAPH_MAX_BODY_BYTES, 413 past it), ``await adapter.verify(hook)`` (403), parse
(400/422), ``await inbox.intake.receive(items)``; then it answers. A failed commit raises
``CommitFailed``, answered 503 in one place (``web/errors.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, HTTPException, Request, status

from channels import signatures
from heliograph.bounds import TooDeep, load_json
from heliograph.bounds import strip_nul as without_nul
from heliograph.settings import Section, get_settings
from inbox.edits import InboundEdit
from inbox.ingest import InboundMessage
from inbox.outbox import (
    DeliveryResult,
    OutboundMessage,
    delivery_progress,
    register_sender,
    save_delivery_progress,
)


class WebhookError(Exception):
    status_code: ClassVar[int] = 400


class BadSignature(WebhookError):
    """The request is not from the provider it claims to be from (HTTP 403)."""

    status_code = 403


class BadPayload(WebhookError):
    """The body cannot be understood; the message says what is wrong (HTTP 400)."""

    status_code = 400


class InvalidFields(WebhookError):
    """The body parsed but its fields are missing or of the wrong type (HTTP 422)."""

    status_code = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass
class WebhookRequest:
    """What an adapter sees of an HTTP request: enough to verify and parse it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, request: Request, body: bytes = b"") -> WebhookRequest:
        """The view of a FastAPI request (with ``body`` already read, or none yet)."""
        return cls(
            request.method, str(request.url), request.headers, body, dict(request.query_params)
        )

    def json(self, strip_nul: bool = True) -> Any:
        """The body parsed, at most MAX_JSON_DEPTH deep, with NUL taken out of its text.

        A provider's NUL is stripped, not refused: the provider would retry a refused
        update and then drop the customer's message, and a NUL carries nothing a person
        wrote (PostgreSQL cannot store it). Our own API channel passes ``strip_nul=False``
        and refuses it (422): its sender is an integrator who can read the reason and fix
        it. The signature was checked on the bytes as sent, before this."""
        try:
            value = load_json(self.body)
            return without_nul(value) if strip_nul else value
        except TooDeep as exc:
            raise BadPayload(str(exc)) from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadPayload(f"the body is not valid JSON: {exc}") from exc


async def read_body(request: Request, limit: int, what: str = "the body") -> bytes:
    """The body, read up to ``limit`` bytes; a larger one is 413, without reading it all
    (nor any of it when its Content-Length already says so)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(what, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(what, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, f"{what} is over the limit of {limit} bytes"
    )


async def webhook_request(request: Request) -> WebhookRequest:
    """A webhook route's dependency: the request with its body (HELIOGRAPH_MAX_BODY_BYTES at
    most), as its adapter verifies and parses it."""
    return WebhookRequest.of(request, await read_body(request, get_settings().max_body_bytes))


#: ``hook: Hook`` in a route's signature: the request view, body read (413 past the limit).
Hook = Annotated[WebhookRequest, Depends(webhook_request)]


class ChannelAdapter:
    """Base class: verify, parse, send. Subclasses set ``name`` and override the three."""

    name: ClassVar[str] = ""
    #: What the channel can show; the base turns the rest into text fallbacks.
    max_text_length: ClassVar[int] = 100_000

    def enabled(self) -> bool:
        return True

    async def verify(self, request: WebhookRequest) -> None:
        raise BadSignature(f"{self.name}: no verification configured")

    def parse(self, request: WebhookRequest) -> list[InboundMessage | InboundEdit]:
        """The request as messages and edits; ``[]`` for an event we deliberately ignore."""
        raise NotImplementedError

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        raise NotImplementedError

    async def send_in_parts(
        self, message: OutboundMessage, send_part: Callable[[str], Awaitable[str]]
    ) -> DeliveryResult:
        """Send a reply split to fit the channel, never re-sending a part that went out.

        ``send_part`` posts one part and returns the provider's id for it. Each accepted part
        is committed to the reply's delivery progress before the next is sent, so a retry
        (after a 5xx, a 429 or a crash) resumes with the first part the provider has not
        acknowledged. The one window left is a crash between the provider's answer and our
        commit, where that single part may go twice (at-least-once, per part).
        """
        parts = self.split_text(message.text)
        progress = await delivery_progress(message.message_id) if len(parts) > 1 else {}
        sent: dict[str, str] = dict(progress.get("parts", {}))
        for index, part in enumerate(parts):
            if str(index) in sent:
                continue
            sent[str(index)] = await send_part(part)
            if len(parts) > 1:
                await save_delivery_progress(
                    message.message_id, {"parts": sent, "count": len(parts)}
                )
        return DeliveryResult(external_id=sent.get("0"), status="sent")

    def split_text(self, text: str) -> list[str]:
        """Cut a long reply at paragraph, line or word boundaries to fit the channel."""
        limit = self.max_text_length
        parts: list[str] = []
        rest = text
        while len(rest) > limit:
            # The first kind of boundary that keeps the part over half full wins: a paragraph
            # break, else a line break, else a space (max() of all three always took the space).
            cuts = (rest.rfind(sep, 0, limit) for sep in ("\n\n", "\n", " "))
            cut = next((c for c in cuts if c > limit // 2), limit)
            parts.append(rest[:cut].rstrip())
            rest = rest[cut:].lstrip()
        if rest or not parts:
            parts.append(rest)
        return parts


@dataclass(frozen=True)
class ChannelPackage:
    """What one channel (or provider) package brings, declared in its ``package.py`` and
    listed once in ``channels/registry.py``: the web app mounts ``routes``, the sandbox
    mounts ``fakes``, the configuration page documents ``settings``, and ``heliograph
    demo`` sets ``demo_env(sandbox_url)`` (values pointing the provider at its fake)."""

    name: str
    routes: APIRouter | None = None
    fakes: tuple[APIRouter, ...] = ()
    settings: type[Section] | None = None
    demo_env: Callable[[str], dict[str, str]] = field(default=lambda sandbox_url: {})
    docs: str = ""  # its page under docs/channels/, provider set-up step by step


_registry: dict[str, ChannelAdapter] = {}
LifecycleHook = Callable[[], Awaitable[None]]
#: e.g. Telegram setWebhook when HELIOGRAPH_PUBLIC_URL is set
startup_hooks: list[LifecycleHook] = []
shutdown_hooks: list[LifecycleHook] = []  # e.g. close an SDK's HTTP session


def register(adapter: ChannelAdapter) -> ChannelAdapter:
    """Add an adapter to the registry and make it the sender for its channel."""
    _registry[adapter.name] = adapter
    register_sender(adapter.name, adapter.send)
    return adapter


def get_adapter(name: str) -> ChannelAdapter:
    return _registry[name]


def adapters() -> dict[str, ChannelAdapter]:
    return dict(_registry)


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_hmac_header(
    secret: str, body: bytes, header: str | None, prefix: str = "sha256="
) -> None:
    """Constant-time check of a ``sha256=<hex>`` signature header; fail closed."""
    if not secret:
        raise BadSignature("this channel has no secret configured, so nothing is accepted")
    if not header:
        raise BadSignature("the signature header is missing")
    if not header.startswith(prefix):
        raise BadSignature(f"the signature header must start with {prefix!r}")
    expected = prefix + hmac_sha256_hex(secret, body)
    if not signatures.matches(header.strip(), expected):
        raise BadSignature("the signature does not match the body")
