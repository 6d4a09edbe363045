"""Real speech, real whisper weights from local files, checked by word error rate.

The bounds leave room for espeak-ng's robotic voice (whisper mishears a word or two of
it); they fail when a transcript is wrong in earnest: another language, garbage, nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.amr import encoder_library, write_amr
from tests.utils.speech import Clip, ffmpeg
from tests.utils.wer import wer
from transcription import audio, engines, weights
from transcription.ct2convert import read_ct2, to_openai
from transcription.service import Transcriber

BOUNDS = {"en": 0.25, "es": 0.35, "fr": 0.25}


def _heard(engine: engines.Engine, clip: Clip, language: str | None = None) -> engines.Transcript:
    return engine.transcribe(audio.decode_audio(str(clip.path)), language)


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_base_model_transcribes_and_detects_the_language(
    base_engine: engines.Engine, speech: dict[str, Clip], lang: str
) -> None:
    clip = speech[lang]
    result = _heard(base_engine, clip)
    assert result.language == lang, result
    assert wer(clip.text, result.text) <= BOUNDS[lang], result.text


def test_tiny_en_transcribes_english(
    tiny_en_engine: engines.Engine, speech: dict[str, Clip]
) -> None:
    result = _heard(tiny_en_engine, speech["en"])
    assert result.language == "en"
    assert wer(speech["en"].text, result.text) <= BOUNDS["en"], result.text


def test_openai_whisper_on_the_same_weights_hears_the_same(
    openai_engine: engines.Engine, base_engine: engines.Engine, speech: dict[str, Clip]
) -> None:
    """openai-whisper runs the base weights converted back from CTranslate2."""
    for lang in ("en", "fr"):
        clip = speech[lang]
        result = _heard(openai_engine, clip)
        assert result.language == lang
        assert result.language_probability is not None and result.language_probability > 0.5
        assert wer(clip.text, result.text) <= BOUNDS[lang], result.text


def test_the_conversion_is_exact(model_dir: Path) -> None:
    """Every tensor of the CTranslate2 file lands in openai-whisper's model unchanged."""
    torch = pytest.importorskip("torch")
    whisper = pytest.importorskip("whisper")
    try:
        ct2 = weights.ct2_model("tiny.en", model_dir)
    except weights.WeightsNotFound as exc:
        pytest.skip(str(exc))
    variables = read_ct2(ct2 / "model.bin")
    checkpoint = to_openai(variables)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])  # strict: no key missing or extra
    assert not model.is_multilingual  # tiny.en: 51864 tokens
    query = model.decoder.blocks[2].cross_attn.query.weight
    assert torch.equal(
        query, torch.from_numpy(variables["decoder/layer_2/attention/linear_0/weight"].copy())
    )


def test_missing_weights_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(engines.ModelUnavailable, match="no local weights for whisper model"):
        engines.load_engine(
            "faster-whisper", engines.EngineConfig(model="large-v3", model_dir=tmp_path)
        )
    pytest.importorskip("whisper")
    with pytest.raises(engines.ModelUnavailable, match="HELIOGRAPH_WHISPER_MODEL"):
        engines.load_engine(
            "openai-whisper", engines.EngineConfig(model="medium", model_dir=tmp_path)
        )
    with pytest.raises(engines.ModelUnavailable, match="unknown whisper engine"):
        engines.load_engine("vosk", engines.EngineConfig(model="base", model_dir=tmp_path))


async def test_a_note_longer_than_a_window_is_done_window_by_window(
    tiny_en_engine: engines.Engine, long_note: Clip, tmp_path: Path
) -> None:
    from heliograph.settings import Settings

    transcriber = Transcriber(
        Settings(whisper_window_s=30.0, whisper_model_dir=str(tmp_path)), engine=tiny_en_engine
    )
    first = await transcriber.transcribe(str(long_note.path), budget_s=0.0)
    assert first.windows == 2 and 35 < first.duration_s < 60
    assert first.status == "partial" and first.next_window == 1  # stopped after one window
    rest = await transcriber.transcribe(
        str(long_note.path), first_window=1, language=first.language
    )
    assert rest.status == "ok" and rest.next_window is None
    heard = f"{first.text} {rest.text}"
    assert wer(long_note.text, heard) <= 0.25, heard
    transcriber.shutdown()


@pytest.mark.parametrize(
    ("suffix", "args"),
    [
        (".ogg", ["-c:a", "libopus", "-b:a", "24k"]),  # Telegram and WhatsApp voice notes
        (".amr", []),  # MMS: 8 kHz AMR-NB, encoded with opencore-amrnb (see mms_amr)
        (".mp3", ["-c:a", "libmp3lame", "-b:a", "32k"]),  # MMS
        (".m4a", ["-c:a", "aac", "-b:a", "48k"]),  # iPhone voice memos
    ],
)
def test_every_format_a_channel_delivers_decodes(
    speech: dict[str, Clip], tmp_path: Path, suffix: str, args: list[str]
) -> None:
    wav = speech["en"].path
    expected = audio.duration_s(audio.decode_audio(str(wav)))
    target = tmp_path / f"note{suffix}"
    encoded = mms_amr(wav, target) if suffix == ".amr" else ffmpeg(wav, target, *args)
    samples = audio.decode_audio(str(encoded))
    assert abs(audio.duration_s(samples) - expected) < 0.2
    assert not audio.is_silent(samples)


def test_amr_from_mms_is_heard(
    base_engine: engines.Engine, speech: dict[str, Clip], tmp_path: Path
) -> None:
    """8 kHz AMR-NB is the worst audio a channel delivers; whisper still gets the words."""
    clip = speech["en"]
    amr = mms_amr(clip.path, tmp_path / "mms.amr")
    result = base_engine.transcribe(audio.decode_audio(str(amr)), None)
    assert result.language == "en"
    assert wer(clip.text, result.text) <= 0.35, result.text


def mms_amr(wav: Path, target: Path) -> Path:
    """AMR-NB at 12.2 kbit/s from ``wav`` (Debian's ffmpeg decodes AMR but cannot encode it)."""
    if encoder_library() is None:
        pytest.skip("libopencore-amrnb is not installed")
    eight_k = ffmpeg(wav, target.with_suffix(".8k.wav"), "-ar", "8000", "-ac", "1")
    return write_amr(audio.decode_audio(str(eight_k))[::2], target)


def test_undecodable_audio_is_an_error_with_the_reason(tmp_path: Path) -> None:
    junk = tmp_path / "voice.ogg"
    junk.write_bytes(b"OggS" + b"\x00" * 200)
    with pytest.raises(audio.AudioDecodeError, match="ffmpeg could not decode it"):
        audio.decode_audio(str(junk))


def test_windows_are_cut_in_a_pause() -> None:
    import numpy as np

    sr = audio.SAMPLE_RATE
    tone = 0.3 * np.sin(np.linspace(0, 2 * np.pi * 220 * 10, 10 * sr)).astype(np.float32)
    pause = np.zeros(sr // 2, dtype=np.float32)
    samples = np.concatenate([tone, tone, pause, tone, tone, tone])  # pause at 20.0-20.5 s
    cuts = audio.windows(samples, window_s=25.0, search_s=8.0)
    assert 20.0 <= cuts[0].end_s <= 20.5  # in the pause, not at 25 s mid-tone
    assert all(w.end_s - w.start_s <= 25.0 for w in cuts)
    assert cuts[-1].end_s == pytest.approx(len(samples) / sr)
