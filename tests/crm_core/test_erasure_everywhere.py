"""Erasure reaches every copy (issue #14), and the export holds everything it removes.

The world (tests/utils/erasure_world.py) is a Telegram customer with a translation,
a voice note in the media folder, a reply, a note, contacts, CRM events and a handoff
between two members' Telegram chats. After ``POST /customers/{id}/erase`` every text,
string and JSON column of every table, and every file under the media folder, is
searched for her name, email, phone, Telegram id and the word only she used.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import SQLModel

from crm_core.personal_data import TABLES
from heliograph.models import AuditEvent
from inbox.models import Attachment
from routing.models import TeamMember
from routing.team import create_token
from tests.utils.erasure_world import (
    CHAT,
    EMAIL,
    FIRST,
    LAST,
    SEARCHED,
    WORD,
    World,
    build,
    found_in_files,
    found_in_tables,
    heard,
    translating,
    whisper_base,
)
from tests.utils.telegram_team import TeamBot

__all__ = ["heard", "translating", "whisper_base"]  # fixtures too

API = "/api/v1"


async def her_world(bot: TeamBot, tmp_path: Path) -> World:
    world = await build(bot, tmp_path)
    (note,) = await bot.rows(Attachment)
    # espeak-ng's Portuguese is hard on whisper base: what it heard is searched for as is.
    assert note.transcript and len(note.transcript.split()) >= 4, note.transcript_note
    assert note.storage_path
    # Each personal table holds something of hers, so the search below is not vacuous.
    async with bot.db.read_session() as session:
        for table in SQLModel.metadata.sorted_tables:
            entry = TABLES[table.name]
            if entry.personal:
                n = (await session.execute(select(func.count()).select_from(table))).scalar()
                assert n, f"the world put nothing in {table.name}"
    return world


async def test_erasure_leaves_nothing_of_her_in_any_table_or_file(
    translating: TeamBot, heard: None, tmp_path: Path
) -> None:
    bot = translating
    world = await her_world(bot, tmp_path)
    (note,) = await bot.rows(Attachment)
    stored = Path(str(note.storage_path))
    voice = await asyncio.to_thread(stored.read_bytes)
    searched = (*SEARCHED, str(note.transcript))  # what whisper heard her say, too
    before = await found_in_tables(bot, searched)
    for word in searched:  # everywhere the issue named, before
        assert any(hit.endswith(f": {word}") for hit in before), word
    for place in ("handoff.context", "translation_cache.translated", "job.payload",
                  "attachment.transcript", "telegram_agent_update.outcome",
                  "idempotency_record.response", "note.text"):  # fmt: skip
        assert any(hit.startswith(place) for hit in before), place
    handoffs = await bot.app.get(f"{API}/handoffs", headers=world.admin)
    assert WORD in handoffs.text and FIRST in handoffs.text

    erased = await bot.app.post(f"{API}/customers/{world.customer_id}/erase", headers=world.admin)
    assert erased.status_code == 200, erased.text
    rows = erased.json()["rows"]
    assert rows["handoff"] == 1 and rows["translation_cache"] >= 2 and rows["file"] == 1

    assert await found_in_tables(bot, searched) == []
    assert found_in_files(world.media, searched, voice) == []
    assert not await asyncio.to_thread(stored.exists)
    handoffs = await bot.app.get(f"{API}/handoffs", headers=world.admin)
    assert handoffs.status_code == 200 and len(handoffs.json()) == 1
    assert not any(w.lower() in handoffs.text.lower() for w in SEARCHED)
    (audit,) = await bot.rows(AuditEvent, AuditEvent.action == "customer.erase")
    assert audit.subject_id == world.customer_id
    assert not any(w.lower() in json.dumps(audit.details).lower() for w in SEARCHED)
    # The team's history stays: the conversation, its messages and the handoff's times.
    detail = await bot.app.get(f"{API}/conversations/{world.conversation_id}", headers=world.admin)
    assert detail.status_code == 200 and WORD not in detail.text
    # A retried reply gets its first answer (ids only now) and sends nothing again.
    again = await bot.app.post(
        f"{API}/conversations/{world.conversation_id}/reply",
        json={"text": f"{FIRST}, your {WORD} order ships tomorrow."},
        headers={**(await _oliver(bot)), "Idempotency-Key": "z-reply-1"},
    )
    assert again.status_code == 202 and again.json().get("erased") is True
    assert await found_in_tables(bot, searched) == []


async def _oliver(bot: TeamBot) -> dict[str, str]:
    async with bot.db.session() as session:
        (oliver,) = (
            await session.execute(select(TeamMember).where(TeamMember.name == "Oliver Bennett"))
        ).scalars()
        token = await create_token(session, oliver.email)
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


async def test_the_export_holds_everything_the_erasure_removes(
    translating: TeamBot, heard: None, tmp_path: Path
) -> None:
    bot = translating
    world = await her_world(bot, tmp_path)
    answer = await bot.app.get(f"{API}/customers/{world.customer_id}/export", headers=world.admin)
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    for name, entry in TABLES.items():
        if entry.personal:
            assert doc.get(entry.export), f"{name}: the export's {entry.export!r} is empty"
    (handoff,) = doc["handoffs"]
    assert handoff["context"]["customer"]["name"] == f"{FIRST} {LAST}"
    assert any(WORD in m["text"] for m in handoff["context"]["messages"])
    assert WORD in handoff["reason"] or WORD in handoff["context"].get("handoff_note", "")
    assert {t["translated"] for t in doc["translations"]} >= {
        f"[en] Olá, o meu pedido {WORD} ainda não chegou."
    }
    (conversation,) = doc["conversations"]
    (note,) = await bot.rows(Attachment)
    assert note.transcript
    assert any(a["transcript"] == note.transcript for a in conversation["attachments"])
    assert {c["value"] for c in doc["contact_points"]} == {EMAIL, "+447700900461"}
    assert {i["external_id"] for i in doc["identities"]} == {CHAT}
    notices = [j for j in doc["jobs"] if j["kind"] == "telegram.team_send"]
    assert any(WORD in j["payload"]["text"] for j in notices)  # the team's notices
    assert {m["table"] for m in doc["mentions"]} >= {"telegram_agent_update", "job"}
    assert {r["response"]["text"] for r in doc["idempotency_records"] if "text" in r["response"]}
    # What the erasure then removes was all in the document.
    text = json.dumps(doc)
    assert all(w.lower() in text.lower() for w in SEARCHED if w != "7700 900461")
