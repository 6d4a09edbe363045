"""Voice notes: transcribe a stored audio attachment and show the words to agents.

``attachment.stored`` (inbox.media) queues ``attachment.transcribe``. The transcript, the
language whisper heard and a status go on the attachment: ``ok``, ``empty`` (silence, or
no words recognised), ``failed`` (undecodable audio, engine error) or ``unavailable`` (no
model here), with the reason in ``transcript_note``; ``partial`` while a long note is
still being worked through. Nothing is hidden: a note that could not be transcribed says
why on the attachment the agent sees beside the audio.

The message text. A voice-only message has no text, and every agent surface (Slack and
Telegram mirrors, the inbox list, routing's topic keywords, handoff context packages)
reads ``Message.text``. So when the message had no text, the transcript becomes its text
as one line per note, marked "🎤 " so that nobody takes machine-heard words for typed
ones; translation then treats it like any message. A message with a caption keeps the
customer's caption untouched (the transcript stays on the attachment), and a failed
transcription never writes into the text: the attachment carries the reason.

A long note is transcribed ~30 s window by window; after ``whisper_job_budget_s`` the
job stores the text so far and queues its own continuation, so one job never outlives
its lease however long the note.
"""

from __future__ import annotations

import logging
from typing import Any

from crm_core.identity import get_customer
from heliograph import jobs
from heliograph.db import get_db
from inbox.bus import (
    ATTACHMENT_STORED,
    ATTACHMENT_TRANSCRIBED,
    TRANSCRIBE_ATTACHMENT,
    TRANSLATE_MESSAGE,
    AttachmentTranscribed,
    MessageRef,
    TranscribeAttachment,
)
from inbox.models import Attachment, Conversation, Message
from inbox.translation import VOICE_MARK
from transcription.service import Progress, get_transcriber, startup_check

log = logging.getLogger(__name__)

FINAL = ("ok", "empty", "failed", "unavailable")

jobs.subscribe(ATTACHMENT_STORED, TRANSCRIBE_ATTACHMENT)


def is_voice(attachment: Attachment) -> bool:
    return attachment.kind == "audio" or (attachment.content_type or "").startswith("audio/")


@jobs.handler(TRANSCRIBE_ATTACHMENT)
async def transcribe_attachment(payload: TranscribeAttachment) -> None:
    attachment_id, window = payload.attachment_id, payload.window
    async with get_db().read_session() as session:
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None or not attachment.storage_path or not is_voice(attachment):
            return
        if attachment.transcript_status in FINAL:
            return  # done by an earlier run of this job
        if window > 0 and attachment.transcript_status != "partial":
            return
        message = await session.get(Message, attachment.message_id)
        assert message is not None
        conversation = await session.get(Conversation, message.conversation_id)
        assert conversation is not None
        prior = (
            conversation.language
            or (await get_customer(session, conversation.customer_id)).language
        )
    transcriber = get_transcriber()
    progress = await transcriber.transcribe(
        attachment.storage_path,
        first_window=window,
        language=attachment.transcript_language if window > 0 else None,
        prior_language=prior,
        budget_s=transcriber.settings.whisper_job_budget_s,
    )
    if progress.status in ("failed", "unavailable", "empty"):
        log.warning(
            "voice note %s not transcribed (%s): %s", attachment_id, progress.status, progress.note
        )
    await _store(attachment_id, window, progress)


async def _store(attachment_id: int, window: int, progress: Progress) -> None:
    async with get_db().session() as session:
        attachment = await session.get(Attachment, attachment_id)
        if attachment is None:
            return
        earlier = attachment.transcript or "" if window > 0 else ""
        text = " ".join(t for t in (earlier, progress.text) if t).strip()
        attachment.transcript = text or None
        attachment.transcript_status = progress.status
        attachment.transcript_language = progress.language
        attachment.transcript_note = _note(progress, attachment.transcript_note, window)
        if progress.status == "partial":
            assert progress.next_window is not None
            await jobs.enqueue(
                session,
                TRANSCRIBE_ATTACHMENT,
                TranscribeAttachment(attachment_id=attachment_id, window=progress.next_window),
                dedupe_key=f"transcribe:{attachment_id}:{progress.next_window}",
            )
        else:
            if progress.status == "ok":
                await _voice_line(session, attachment, text, progress.language)
            await jobs.publish(
                session,
                ATTACHMENT_TRANSCRIBED,
                AttachmentTranscribed(
                    attachment_id=attachment_id,
                    message_id=attachment.message_id,
                    status=progress.status,
                ),
            )
        await session.commit()
    jobs.wake_workers()


def _note(progress: Progress, earlier: str | None, window: int) -> str | None:
    parts = [earlier if window > 0 else None, progress.note]
    if progress.status in ("ok", "partial") and progress.windows > 1:
        parts.append(f"{progress.duration_s:.0f} s in {progress.windows} windows")
    note = "; ".join(dict.fromkeys(p for p in parts if p))
    return note[:500] or None


async def _voice_line(
    session: Any, attachment: Attachment, transcript: str, language: str | None
) -> None:
    """Give a voice-only message its words (see the module's docstring for why)."""
    message = await session.get(Message, attachment.message_id)
    if message is None or message.original_text is not None:
        return
    lines = [line for line in message.text.splitlines() if line.strip()]
    if any(not line.startswith(VOICE_MARK) for line in lines):
        return  # the customer wrote something: their text stays as it is
    line = VOICE_MARK + transcript
    if line in lines:
        return
    message.text = "\n".join([*lines, line])
    message.original_language = message.original_language or language
    message.translation_status = None
    await jobs.enqueue(
        session,
        TRANSLATE_MESSAGE,
        MessageRef(message_id=message.id),
        dedupe_key=f"translate-voice:{message.id}:{attachment.id}",
    )


def _register_startup_check() -> None:
    from heliograph import runtime

    if startup_check not in runtime.startup_checks:
        runtime.startup_checks.append(startup_check)


_register_startup_check()
