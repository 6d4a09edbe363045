"""Voice notes in tests: a channel (``CHANNEL``) whose notes are files on this machine,
sent through the intake, and the message and attachment they became."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from crm_core.identity import SenderProfile
from heliograph.db import Database
from inbox import media
from inbox.ingest import InboundAttachment, InboundMessage
from inbox.models import Attachment, Message
from tests.utils.factories import store
from tests.utils.speech import Clip, ffmpeg

CHANNEL = "voicetest"


async def fetch_file(ref: media.MediaRef) -> media.FetchedMedia:
    assert ref.url is not None
    data = await asyncio.to_thread(Path(ref.url).read_bytes)
    return media.FetchedMedia(data, "audio/ogg")


async def send_voice(
    database: Database, path: Path, text: str = "", msg_id: str = "v1", language: str | None = None
) -> int:
    result = await store(
        database,
        InboundMessage(
            channel=CHANNEL,
            provider_message_id=msg_id,
            sender=SenderProfile(channel=CHANNEL, external_id="caller-1", language=language),
            text=text,
            attachments=[InboundAttachment(kind="audio", url=str(path), content_type="audio/ogg")],
        ),
    )
    return result.message_id


async def message_and_attachment(database: Database, message_id: int) -> tuple[Message, Attachment]:
    async with database.read_session() as session:
        message = await session.get(Message, message_id)
        attachment = (
            await session.execute(select(Attachment).where(Attachment.message_id == message_id))
        ).scalar_one()
    assert message is not None
    return message, attachment


def opus(clip: Clip, tmp_path: Path) -> Path:
    return ffmpeg(clip.path, tmp_path / f"{clip.path.stem}.ogg", "-c:a", "libopus", "-b:a", "24k")
