"""Translation through the real deep-translator client against the LibreTranslate fake,
which runs in its own process (the provider sandbox): inbound shown translated with the
original kept, replies sent translated, the cache, provider failures, agent corrections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.api import close_client
from heliograph import jobs, live
from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox import translation
from inbox.attachments_out import OutgoingFile
from inbox.bus import MessageRef
from inbox.conversations import reply
from inbox.models import Conversation, Message, Note
from routing.models import TeamMember
from sandbox.samples import tiny_png
from tests.utils.db import rows
from tests.utils.factories import edit, inbound, make_member, member_with_token, store
from tests.utils.jobs import run_jobs
from tests.utils.sandbox import API_ENV
from transcription.models import TranslationCache

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


SANDBOX_ENV = API_ENV  # the provider sandbox checks reply signatures with the test secret


async def member_languages(session: AsyncSession, member_id: int) -> list[str]:
    """What routing registers in the product (TeamMember.languages)."""
    member = await session.get(TeamMember, member_id)
    return list(member.languages) if member is not None else []


class Sandbox:
    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=5)

    async def calls(self, provider: str) -> list[dict[str, Any]]:
        found = (await self.http.get("/_sandbox/calls", params={"provider": provider})).json()
        return [c["params"] for c in sorted(found, key=lambda c: c["seq"])]

    async def fail(self, seconds: float) -> None:
        body = {"provider": "libretranslate", "mode": "500", "seconds": seconds}
        (await self.http.post("/_sandbox/fail", json=body)).raise_for_status()

    async def recover(self) -> None:
        await self.http.delete("/_sandbox/fail", params={"provider": "libretranslate"})


@pytest.fixture
async def fake(
    database: Database, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Sandbox]:
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_ENABLED", "true")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_PROVIDER", "libre")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_URL", f"{sandbox_url}/libretranslate")
    monkeypatch.setenv("HELIOGRAPH_API_OUTBOUND_URL", f"{sandbox_url}/api-receiver/replies")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_REPLY_WAIT_S", "30")
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    translation.register_reader_languages(member_languages)
    box = Sandbox(sandbox_url)
    await box.http.delete("/_sandbox/calls")
    await box.recover()
    yield box
    await box.recover()
    await box.http.aclose()
    translation.register_reader_languages(None)
    await close_client()


async def customer_says(
    database: Database, msg_id: str, text: str, sender: str = "c1", language: str | None = None
) -> Message:
    extra = {"language": language} if language else {}
    result = await store(database, inbound(msg_id, sender, text=text, **extra))
    return await message(database, result.message_id)


async def message(database: Database, message_id: int) -> Message:
    async with database.read_session() as session:
        found = await session.get(Message, message_id)
    assert found is not None
    return found


async def conversation(database: Database, conversation_id: int) -> Conversation:
    async with database.read_session() as session:
        found = await session.get(Conversation, conversation_id)
    assert found is not None
    return found


async def work_until(
    database: Database, done: Callable[[], Awaitable[bool]], within_s: float = 15.0
) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        await run_jobs(database)
        if await done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the jobs did not get there in time")


async def agent(database: Database, languages: list[str], name: str = "Ann Agent") -> int:
    async with database.session() as session:
        member = await make_member(session, name=name, languages=languages)
        await session.commit()
    assert member.id is not None
    return member.id


async def assign(database: Database, conversation_id: int, member_id: int) -> None:
    async with database.session() as session:
        found = await session.get(Conversation, conversation_id)
        assert found is not None
        found.assignee_id = member_id
        await session.commit()


async def test_an_inbound_message_is_shown_translated_with_the_original_kept(
    database: Database, fake: Sandbox
) -> None:
    sent = await customer_says(database, "m1", "Olá, meu pedido ainda não chegou.", language="pt")
    pages = live.subscribe()  # an open inbox and thread
    try:
        await run_jobs(database)
        heard = [pages.queue.get_nowait() for _ in range(pages.queue.qsize())]
    finally:
        pages.close()
    shown = await message(database, sent.id)  # type: ignore[arg-type]
    # The open pages were told once the translation was stored: no reload needed.
    cid = shown.conversation_id
    assert ("inbox", {"conversation_id": cid}) in heard
    assert (f"conversation-{cid}", {"conversation_id": cid}) in heard
    assert shown.text == "Hello, my order has not arrived yet."  # what agents read
    assert shown.original_text == "Olá, meu pedido ainda não chegou."  # the customer's words
    assert shown.original_language == "pt" and shown.translation_status == "done"
    assert "pt->en by libre" in (shown.translation_note or "")
    assert (await conversation(database, shown.conversation_id)).language == "pt"
    [call] = await fake.calls("libretranslate")
    assert call["source"] == "pt" and call["target"] == "en" and call["format"] == "text"


async def test_messages_translated_together_are_each_stored_with_their_own_result(
    database: Database, fake: Sandbox
) -> None:
    """Three customers write before the workers run: their translations are made side by
    side and stored in one transaction (with their jobs' completion); each message shows
    its own result, and each conversation keeps its own language."""
    pt = await customer_says(database, "b1", "Meu pagamento falhou.", "c1", language="pt")
    es = await customer_says(database, "b2", "¿Dónde está mi pedido?", "c2", language="es")
    en = await customer_says(database, "b3", "Where is my parcel today?", "c3", language="en")
    await run_jobs(database, rounds=1)
    shown = {m.id: await message(database, m.id) for m in (pt, es, en)}  # type: ignore[misc]
    assert (shown[pt.id].text, shown[pt.id].translation_status) == ("My payment failed.", "done")
    assert (shown[es.id].text, shown[es.id].translation_status) == ("Where is my order?", "done")
    assert (shown[en.id].text, shown[en.id].translation_status) == (
        "Where is my parcel today?",
        "not_needed",
    )
    for sent, code in ((pt, "pt"), (es, "es")):
        assert (await conversation(database, sent.conversation_id)).language == code
    async with database.read_session() as session:
        statuses = (
            await session.execute(select(Job.status).where(Job.kind == "message.translate"))
        ).scalars()
        assert set(statuses) == {"done"}


async def test_a_campaigns_identical_answers_ask_the_provider_once_and_count_in_the_cache(
    database: Database, fake: Sandbox
) -> None:
    """Six customers answer a campaign with the same words before the workers run: more
    than the batch translates side by side, so the later ones find the translation the
    batch made (not stored yet: the batch stores it with the messages, in one commit)."""
    sent = [
        await customer_says(database, f"k{n}", "Meu pagamento falhou.", f"c{n}", language="pt")
        for n in range(6)
    ]
    await run_jobs(database, rounds=1)
    assert [(await message(database, m.id)).text for m in sent] == ["My payment failed."] * 6  # type: ignore[arg-type]
    assert len(await fake.calls("libretranslate")) == 1
    async with database.read_session() as session:
        [row] = (await session.execute(select(TranslationCache))).scalars().all()
    assert (row.source, row.target, row.translated, row.hits) == (
        "pt",
        "en",
        "My payment failed.",
        5,
    )


async def test_an_unknown_customers_language_is_detected_and_kept(
    database: Database, fake: Sandbox
) -> None:
    sent = await customer_says(database, "m1", "Onde está meu pedido?")
    await run_jobs(database)
    shown = await message(database, sent.id)  # type: ignore[arg-type]
    assert shown.text == "Where is my order?"
    kept = await conversation(database, shown.conversation_id)
    assert (kept.language, kept.language_source) == ("pt", "detected")
    # A message the team reads needs no translation: nothing is sent to the provider.
    english = await customer_says(database, "m2", "Thanks, I will wait for the courier", "c2")
    await run_jobs(database)
    assert (await message(database, english.id)).translation_status == "not_needed"  # type: ignore[arg-type]
    assert len(await fake.calls("libretranslate")) == 1


async def test_the_same_text_is_translated_once(database: Database, fake: Sandbox) -> None:
    first = await customer_says(database, "m1", "Meu pagamento falhou.", "c1", language="pt")
    second = await customer_says(database, "m2", "Meu pagamento falhou.", "c2", language="pt")
    await run_jobs(database)
    for sent in (first, second):
        assert (await message(database, sent.id)).text == "My payment failed."  # type: ignore[arg-type]
    assert len(await fake.calls("libretranslate")) == 1
    # One of them asked the provider, the other took its answer (they run side by side,
    # so either may be first).
    notes = [(await message(database, m.id)).translation_note or "" for m in (first, second)]  # type: ignore[arg-type]
    assert sorted("(cached)" in note for note in notes) == [False, True], notes
    async with database.read_session() as session:
        [row] = (await session.execute(select(TranslationCache))).scalars().all()
    assert (row.provider, row.source, row.target, row.hits) == ("libre", "pt", "en", 1)


async def test_a_provider_failure_leaves_the_original_visible_and_retries(
    database: Database, fake: Sandbox
) -> None:
    await fake.fail(seconds=60)
    sent = await customer_says(database, "m1", "Obrigado!", language="pt")
    await run_jobs(database, rounds=1)
    failed = await message(database, sent.id)  # type: ignore[arg-type]
    assert failed.text == "Obrigado!" and failed.original_text is None  # still readable
    assert failed.translation_status == "failed"
    assert "libre" in (failed.translation_note or "")
    async with database.read_session() as session:
        job = (
            await session.execute(select(Job).where(Job.kind == "message.translate"))
        ).scalar_one()
    assert job.status == "pending" and job.last_error  # it will be tried again
    await fake.recover()

    async def translated() -> bool:
        return (await message(database, sent.id)).translation_status == "done"  # type: ignore[arg-type]

    await work_until(database, translated)
    assert (await message(database, sent.id)).text == "Thank you!"  # type: ignore[arg-type]


async def test_an_agent_who_reads_the_language_gets_no_translation(
    database: Database, fake: Sandbox
) -> None:
    sent = await customer_says(database, "m1", "Onde está meu pedido?", language="pt")
    await assign(database, sent.conversation_id, await agent(database, ["pt", "en"]))
    await run_jobs(database)
    shown = await message(database, sent.id)  # type: ignore[arg-type]
    assert shown.text == "Onde está meu pedido?" and shown.translation_status == "not_needed"
    assert await fake.calls("libretranslate") == []


async def queue_reply(database: Database, conversation_id: int, text: str, author: int) -> int:
    async with database.session() as session:
        sent = await reply(session, conversation_id, text, author_id=author)
        await session.commit()
    assert sent.id is not None
    return sent.id


async def test_a_reply_is_sent_in_the_customers_language(database: Database, fake: Sandbox) -> None:
    sent = await customer_says(database, "m1", "Onde está meu pedido?", language="pt")
    ann = await agent(database, ["en"])
    await assign(database, sent.conversation_id, ann)
    await run_jobs(database)
    reply_id = await queue_reply(database, sent.conversation_id, "Your order ships tomorrow.", ann)
    assert (await message(database, reply_id)).translation_status == "pending"

    async def delivered() -> bool:
        return (await message(database, reply_id)).delivery_status == "delivered"

    await work_until(database, delivered)
    out = await message(database, reply_id)
    assert out.text == "Seu pedido será enviado amanhã."  # what the customer got
    assert out.original_text == "Your order ships tomorrow."  # what the agent wrote
    assert out.original_language == "en"
    [received] = await fake.calls("api")
    assert received["text"] == "Seu pedido será enviado amanhã."


async def test_a_reply_deferred_for_its_translation_goes_as_soon_as_it_comes(
    database: Database, fake: Sandbox
) -> None:
    """The delivery that found the translation pending was deferred (a second); the
    translation's arrival makes it due at once instead of at the end of that second."""
    sent = await customer_says(database, "m1", "Onde está meu pedido?", language="pt")
    ann = await agent(database, ["en"])
    await run_jobs(database)
    await fake.fail(seconds=120)
    reply_id = await queue_reply(database, sent.conversation_id, "Your order ships tomorrow.", ann)
    await run_jobs(database, rounds=1)  # the translation fails, the delivery waits for it
    (job,) = await rows(database, Job, Job.dedupe_key == f"deliver:{reply_id}")
    assert (job.status, job.attempts, job.run_at > utcnow()) == ("pending", 0, True)
    await fake.recover()

    before = utcnow()
    await translation.translate_reply(MessageRef(message_id=reply_id))
    after = utcnow()
    (job,) = await rows(database, Job, Job.dedupe_key == f"deliver:{reply_id}")
    assert before <= job.run_at <= after  # due from the moment the translation was stored
    await run_jobs(database, rounds=2)
    out = await message(database, reply_id)
    assert (out.delivery_status, out.text) == ("delivered", "Seu pedido será enviado amanhã.")


async def test_a_delivery_that_meets_its_translation_being_made_looks_again_soon(
    database: Database, fake: Sandbox
) -> None:
    """Delivery and translation claimed together: the translation's arrival cannot make a
    running delivery due, so a delivery that sees the translation being made, or just
    made (stored after the delivery read the reply), waits a fifth of a second, not a
    whole one; one waiting for a translation that is not under way waits the second (the
    translation wakes it when it comes)."""
    sent = await customer_says(database, "m1", "Onde está meu pedido?", language="pt")
    ann = await agent(database, ["en"])
    await run_jobs(database)
    reply_id = await queue_reply(database, sent.conversation_id, "Your order ships tomorrow.", ann)
    pending = await message(database, reply_id)
    waits = []
    for status in ("running", "done", "pending"):
        async with database.session() as session:
            key = f"reply-translate:{reply_id}"
            await session.execute(update(Job).where(Job.dedupe_key == key).values(status=status))  # type: ignore[arg-type]
            await session.commit()
        with pytest.raises(jobs.Defer) as deferred:
            await translation.hold_reply(pending)
        waits.append(deferred.value.delay_s)
    assert waits == [translation.TRANSLATING_RECHECK_S, translation.TRANSLATING_RECHECK_S, 1.0]


async def test_a_file_sent_without_words_goes_out_at_once(
    database: Database, fake: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to translate: the image does not wait for a translation (it used to wait
    the whole translation_reply_wait_s, then the agent got a 'not translated' note)."""
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_REPLY_WAIT_S", "600")
    reset_settings()
    sent = await customer_says(database, "m1", "Onde está meu pedido?", language="pt")
    ann = await agent(database, ["en"])
    await run_jobs(database)
    await fake.http.delete("/_sandbox/calls")
    async with database.session() as session:
        image = OutgoingFile("receipt.png", "image/png", tiny_png())
        out = await reply(session, sent.conversation_id, "", author_id=ann, attachments=[image])
        await session.commit()

    async def delivered() -> bool:
        return (await message(database, out.id)).delivery_status == "delivered"  # type: ignore[arg-type]

    await work_until(database, delivered)  # within 15 s, far less than the 600 s wait
    stored = await message(database, out.id)  # type: ignore[arg-type]
    assert (stored.text, stored.translation_status) == ("", None)
    assert await fake.calls("libretranslate") == []
    [received] = await fake.calls("api")
    assert [f["filename"] for f in received["attachments"]] == ["receipt.png"]
    async with database.read_session() as session:
        assert (await session.execute(select(Note))).scalars().all() == []


async def test_a_reply_goes_out_as_written_when_translation_does_not_come(
    database: Database, fake: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_REPLY_WAIT_S", "1.5")
    reset_settings()
    sent = await customer_says(database, "m1", "Onde está meu pedido?", language="pt")
    await run_jobs(database)
    await fake.fail(seconds=120)
    started = time.monotonic()
    ann = await agent(database, ["en"])
    reply_id = await queue_reply(database, sent.conversation_id, "We are checking it now.", ann)

    async def delivered() -> bool:
        return (await message(database, reply_id)).delivery_status == "delivered"

    await work_until(database, delivered)
    assert 1.5 <= time.monotonic() - started < 10  # waited for the translation, not forever
    out = await message(database, reply_id)
    assert out.text == "We are checking it now." and out.original_text is None
    assert out.translation_status == "timed_out"
    [received] = await fake.calls("api")
    assert received["text"] == "We are checking it now."
    async with database.read_session() as session:
        [note] = (await session.execute(select(Note))).scalars().all()
    assert f"reply #{reply_id} was sent as written, not translated to pt" in note.text
    assert "did not arrive within 1.5 s" in note.text
    await fake.recover()
    await run_jobs(database)  # the translation job, retried, finds the reply gone: no rewrite
    assert (await message(database, reply_id)).text == "We are checking it now."


@SQLITE_ONLY
async def test_the_agent_corrects_the_language_and_switches_translation(
    database: Database, fake: Sandbox, client: httpx.AsyncClient
) -> None:
    from web.api import languages

    app = client._transport.app  # type: ignore[attr-defined]
    if not any(getattr(r, "path", "").endswith("/language") for r in app.routes):
        app.include_router(languages.router, prefix="/api/v1")  # until web/api includes it
    _, headers = await member_with_token(database)
    sent = await customer_says(database, "m1", "Onde está?")  # pt or es? lingua is unsure
    await run_jobs(database)
    assert (await message(database, sent.id)).translation_status == "not_needed"  # type: ignore[arg-type]
    url = f"/api/v1/conversations/{sent.conversation_id}"

    bad = await client.post(f"{url}/language", json={"language": "Portuguese"}, headers=headers)
    assert bad.status_code == 400 and "ISO 639-1" in bad.text
    fixed = await client.post(f"{url}/language", json={"language": "pt"}, headers=headers)
    assert fixed.status_code == 200
    assert fixed.json()["language"] == "pt" and fixed.json()["language_source"] == "agent"
    await run_jobs(database)  # recent messages are looked at again in the corrected language
    assert (await message(database, sent.id)).text == "Where is it?"  # type: ignore[arg-type]

    off = await client.post(f"{url}/translation", json={"enabled": False}, headers=headers)
    assert off.status_code == 200 and off.json()["translation_enabled"] is False
    later = await customer_says(database, "m2", "Meu pagamento falhou.")
    await run_jobs(database)
    shown = await message(database, later.id)  # type: ignore[arg-type]
    assert shown.text == "Meu pagamento falhou." and shown.translation_status == "off"
    detail = (await client.get(url, headers=headers)).json()
    first = detail["messages"][0]
    assert (first["text"], first["original_text"]) == ("Where is it?", "Onde está?")


@SQLITE_ONLY
async def test_an_edited_message_is_translated_again(database: Database, fake: Sandbox) -> None:
    sent = await customer_says(database, "m1", "Obrigado!", language="pt")
    await run_jobs(database)
    await edit(database, "api", "m1", "Onde está meu pedido?")
    edited = await message(database, sent.id)  # type: ignore[arg-type]
    assert edited.original_text == "Onde está meu pedido?"  # the new words, kept at once
    await run_jobs(database)
    edited = await message(database, sent.id)  # type: ignore[arg-type]
    assert (edited.text, edited.translation_status) == ("Where is my order?", "done")
    assert edited.raw is not None and edited.raw["edits"][0]["text"] == "Obrigado!"


@SQLITE_ONLY
async def test_a_spanish_voice_note_is_transcribed_then_translated(
    database: Database, fake: Sandbox, base_engine, use_transcriber, speech, tmp_path: Path
) -> None:
    from inbox import media
    from tests.utils.voice import CHANNEL, fetch_file, message_and_attachment, opus, send_voice

    use_transcriber(base_engine)
    media.register_fetcher(CHANNEL, fetch_file)
    try:
        message_id = await send_voice(database, opus(speech["es"], tmp_path))
        await run_jobs(database)
    finally:
        media.register_fetcher(CHANNEL, None)
    shown, attachment = await message_and_attachment(database, message_id)
    assert attachment.transcript_language == "es"
    assert shown.original_text == f"🎤 {attachment.transcript}"  # the heard words, kept
    assert shown.text == f"🎤 [en] {attachment.transcript}"  # the fake's marker translation
    [call] = await fake.calls("libretranslate")
    assert (call["source"], call["target"], call["q"]) == ("es", "en", attachment.transcript)
