"""Fetching attachments from the provider and keeping them on disk (for agents, whisper).

``accept`` enqueues one ``attachment.fetch`` job per attachment; the channel's adapter
registers the function that downloads it (Telegram ``getFile``, Twilio media URL with
the account credentials, WhatsApp Cloud media id, ...).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from heliograph import jobs
from heliograph.db import get_db
from heliograph.settings import get_settings
from inbox.bus import ATTACHMENT_STORED, FETCH_ATTACHMENT, AttachmentRef, AttachmentStored
from inbox.models import Attachment, Message


@dataclass(frozen=True)
class MediaRef:
    attachment_id: int
    channel: str
    url: str | None
    provider_file_id: str | None
    content_type: str | None
    filename: str | None


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    content_type: str | None = None
    filename: str | None = None


Fetcher = Callable[[MediaRef], Awaitable[FetchedMedia]]
_fetchers: dict[str, Fetcher] = {}


def register_fetcher(channel: str, fetcher: Fetcher | None) -> None:
    """The function that downloads ``channel``'s media; None forgets it."""
    if fetcher is None:
        _fetchers.pop(channel, None)
    else:
        _fetchers[channel] = fetcher


def media_dir() -> Path:
    return Path(get_settings().media_dir)


@jobs.handler(FETCH_ATTACHMENT)
async def fetch_attachment(payload: AttachmentRef) -> None:
    attachment_id = payload.attachment_id
    async with get_db().read_session() as session:
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None or attachment.storage_path:
            return  # gone, or fetched by an earlier run of this job
        message = await session.get(Message, attachment.message_id)
        assert message is not None
        ref = MediaRef(
            attachment_id,
            message.channel,
            attachment.url,
            attachment.provider_file_id,
            attachment.content_type,
            attachment.filename,
        )
    fetcher = _fetchers.get(ref.channel)
    if fetcher is None:
        raise jobs.PermanentFailure(f"no media fetcher for channel {ref.channel!r}")
    fetched = await fetcher(ref)
    digest = hashlib.sha256(fetched.data).hexdigest()
    path = media_dir() / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(fetched.data)
    async with get_db().session() as session:
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None:
            return
        attachment.storage_path = str(path)
        attachment.size = len(fetched.data)
        attachment.content_type = attachment.content_type or fetched.content_type
        attachment.filename = attachment.filename or fetched.filename
        await jobs.publish(
            session,
            ATTACHMENT_STORED,
            AttachmentStored(
                attachment_id=attachment_id,
                message_id=attachment.message_id,
                kind=attachment.kind,
            ),
        )
        await session.commit()
