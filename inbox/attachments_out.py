"""Attachments agents send (issue #16): limits per provider, storage, signed media URLs.

``check(channel, files)`` refuses what the channel's provider would refuse (size, type)
before anything is stored; ``store`` keeps the files where fetched inbound attachments are
kept (``media_dir``, under their content hash) as ``Attachment`` rows with
``direction="out"``; ``outgoing_of`` gives a sender what to send. Providers that fetch a
file from us (Twilio ``MediaUrl``, the API channel) get ``media_url``: a signed token
(itsdangerous) served by ``GET /media/<token>`` for ``MEDIA_URL_MAX_AGE_S``.

Documented limits (looked up 2026-12):
- Telegram Bot API: sendPhoto 10 MB (photos), sendDocument 50 MB.
- Twilio MMS: 5 MB per message; WhatsApp through Twilio: 5 MB images, 16 MB documents.
- WhatsApp Cloud API: images (jpeg/png) 5 MB, documents 100 MB.
- Slack: files up to 1 GB (files.getUploadURLExternal; slack_sdk's ``MAX_V2_FILE_SIZE``),
  any type; 10 files a reply (our cap: Slack documents none for one completeUploadExternal).
- Email: ``EMAIL_MAX_BYTES`` (our configured cap, providers commonly allow 25 MB).
- API channel: ``API_MAX_BYTES``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.settings import get_settings
from heliograph.texts import Text
from inbox.models import Attachment

log = logging.getLogger(__name__)

MB = 1024 * 1024
MEDIA_URL_MAX_AGE_S = 3600
EMAIL_MAX_BYTES = 25 * MB
API_MAX_BYTES = 25 * MB
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DOCUMENT_TYPES = frozenset(
    {
        "application/pdf",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/zip",
    }
)


@dataclass(frozen=True)
class OutgoingFile:
    filename: str
    content_type: str
    data: bytes

    @property
    def kind(self) -> str:
        return "image" if self.content_type in IMAGE_TYPES else "file"


@dataclass(frozen=True)
class Limit:
    image_types: frozenset[str]
    image_max: int
    document_types: frozenset[str] | None  # None: any type
    document_max: int
    max_files: int = 10


LIMITS: dict[str, Limit] = {
    "telegram": Limit(IMAGE_TYPES - {"image/webp"}, 10 * MB, None, 50 * MB),
    "sms": Limit(
        frozenset({"image/jpeg", "image/png", "image/gif"}), 5 * MB, DOCUMENT_TYPES, 5 * MB
    ),
    # WhatsApp Cloud API: images jpeg/png 5 MB, documents 100 MB (Twilio's WhatsApp: 16 MB).
    "whatsapp": Limit(frozenset({"image/jpeg", "image/png"}), 5 * MB, DOCUMENT_TYPES, 100 * MB, 1),
    "slack": Limit(IMAGE_TYPES, 1024 * MB, None, 1024 * MB),
    "email": Limit(IMAGE_TYPES, EMAIL_MAX_BYTES, None, EMAIL_MAX_BYTES),
    "api": Limit(IMAGE_TYPES, API_MAX_BYTES, None, API_MAX_BYTES),
}


class AttachmentRefused(ValueError):
    """The channel's provider would not take this file; the message says why."""


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n} bytes"


def check(channel: str, files: Sequence[OutgoingFile]) -> None:
    """Raise ``AttachmentRefused`` when the channel cannot carry these files."""
    if not files:
        return
    limit = LIMITS.get(channel)
    if limit is None:
        raise AttachmentRefused(
            Text("the %(channel)s channel cannot send attachments", channel=channel)
        )
    if len(files) > limit.max_files:
        raise AttachmentRefused(
            Text(
                "%(channel)s takes at most %(max)s attachment(s) per reply, not %(count)s",
                channel=channel,
                max=limit.max_files,
                count=len(files),
            )
        )
    for f in files:
        name = f.filename or Text("the file")
        if not f.data:
            raise AttachmentRefused(Text("%(name)s is empty", name=name))
        ctype = (f.content_type or "").split(";")[0].strip().lower()
        if ctype.startswith("image/") and ctype in limit.image_types:
            cap, what = limit.image_max, Text("images")
        elif limit.document_types is None or ctype in limit.document_types:
            cap, what = limit.document_max, Text("documents")
        else:
            raise AttachmentRefused(
                Text(
                    "%(channel)s cannot send %(name)s: type %(type)s is not accepted",
                    channel=channel,
                    name=name,
                    type=ctype or Text("unknown"),
                )
            )
        if len(f.data) > cap:
            raise AttachmentRefused(
                Text(
                    "%(name)s is %(size)s; %(channel)s takes %(what)s up to %(cap)s",
                    name=name,
                    size=_size(len(f.data)),
                    channel=channel,
                    what=what,
                    cap=_size(cap),
                )
            )


def _write(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = Path(get_settings().media_dir) / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return str(path)


async def store(
    session: AsyncSession, message_id: int, files: Sequence[OutgoingFile]
) -> list[Attachment]:
    """Keep the files of an outgoing message (already checked) in the caller's transaction."""
    rows = []
    for f in files:
        row = Attachment(
            message_id=message_id,
            direction="out",
            kind=f.kind,
            content_type=f.content_type,
            filename=f.filename,
            size=len(f.data),
            storage_path=_write(f.data),
        )
        session.add(row)
        rows.append(row)
    await session.flush()
    return rows


@dataclass(frozen=True)
class SentFile:
    """What a sender needs of one outgoing attachment."""

    attachment_id: int
    filename: str
    content_type: str
    kind: str
    size: int
    storage_path: str

    def read(self) -> bytes:
        return Path(self.storage_path).read_bytes()

    @property
    def url(self) -> str:
        return media_url(self.attachment_id)


async def outgoing_of(session: AsyncSession, message_id: int) -> list[SentFile]:
    rows = await session.execute(
        select(Attachment)
        .where(Attachment.message_id == message_id, Attachment.direction == "out")
        .order_by(Attachment.id)  # type: ignore[arg-type]
    )
    return [
        SentFile(
            a.id,  # type: ignore[arg-type]
            a.filename or "file",
            a.content_type or "application/octet-stream",
            a.kind,
            a.size or 0,
            a.storage_path or "",
        )
        for a in rows.scalars().all()
    ]


async def get_out(session: AsyncSession, attachment_id: int) -> SentFile | None:
    a = await session.get(Attachment, attachment_id)
    if a is None or a.direction != "out" or not a.storage_path:
        return None
    return SentFile(
        attachment_id,
        a.filename or "file",
        a.content_type or "application/octet-stream",
        a.kind,
        a.size or 0,
        a.storage_path,
    )


# --- signed media URLs -----------------------------------------------------------------

_process_key = secrets.token_urlsafe(32)


def _serializer() -> URLSafeTimedSerializer:
    key = os.environ.get("HELIOGRAPH_MEDIA_SECRET") or os.environ.get(
        "HELIOGRAPH_WEB_SESSION_SECRET"
    )
    if not key:
        key = _process_key  # tests and a single process; set a secret when workers are apart
    return URLSafeTimedSerializer(key, salt="heliograph.media")


def media_token(attachment_id: int) -> str:
    return _serializer().dumps(attachment_id)


def media_url(attachment_id: int) -> str:
    base = get_settings().public_url.rstrip("/")
    return f"{base}/media/{media_token(attachment_id)}"


class MediaTokenInvalid(ValueError):
    """A tampered or expired media token."""


def open_token(token: str, max_age: int = MEDIA_URL_MAX_AGE_S) -> int:
    try:
        value = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise MediaTokenInvalid("this link has expired") from exc
    except BadSignature as exc:
        raise MediaTokenInvalid("this link is not valid") from exc
    if not isinstance(value, int):
        raise MediaTokenInvalid("this link is not valid")
    return value
