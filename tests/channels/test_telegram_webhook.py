"""``POST /webhooks/telegram``: one test per recorded update, each replayed, plus the refusals.

The fixtures in ``tests/fixtures/telegram/`` are the update examples of Telegram's own
guide (https://core.telegram.org/bots/webhooks, "Testing your bot with updates"): text,
edited message, voice, audio, document and callback query, with the fields the current
API requires that those older examples predate (``is_bot`` on users, ``file_unique_id`` on
files, ``chat_instance`` on callback queries). ``photo.json`` puts a ``photo`` array of
PhotoSize objects (https://core.telegram.org/bots/api#photosize) and a caption on the same
message; ``text.json``'s sender also has a ``language_code``; the edit has a later update_id.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from crm_core.models import Customer, Identity
from heliograph.db import Database
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.models import Attachment, Conversation, Message
from tests.utils.db import count, rows
from tests.utils.http import TELEGRAM_HEADER as HEADER
from tests.utils.http import TELEGRAM_TOKEN as TOKEN
from tests.utils.http import TELEGRAM_WEBHOOK_SECRET as WEBHOOK_SECRET
from tests.utils.http import post_telegram, post_telegram_twice
from tests.utils.samples import sample

SENT_AT = datetime(2015, 9, 7, 17, 5, 32, tzinfo=UTC)  # "date": 1441645532


def enable_telegram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    reset_settings()


@pytest.fixture
def tg(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> httpx.AsyncClient:
    """The app in-process with Telegram on, over SQLite and PostgreSQL (what is stored)."""
    enable_telegram(monkeypatch)
    return client


@pytest.fixture
async def sqlite_tg(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The same over SQLite only, for refusals that never reach the database."""
    from service.app import create_app

    enable_telegram(monkeypatch)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def nothing_stored(database: Database) -> bool:
    return all(
        [
            await count(database, Message) == 0,
            await count(database, Customer) == 0,
            await count(database, Conversation) == 0,
        ]
    )


STORED_ONCE = [
    {"stored": 1, "duplicates": 0, "edited": 0, "ignored": 0},
    {"stored": 0, "duplicates": 1, "edited": 0, "ignored": 0},
]


async def only_message(database: Database) -> Message:
    (message,) = await rows(database, Message)
    return message


async def only_attachment(database: Database, message: Message) -> Attachment:
    (attachment,) = await rows(database, Attachment)
    assert attachment.message_id == message.id
    assert await count(database, Job, Job.kind == "attachment.fetch") == 1  # fetched once
    return attachment


# --- one test per fixture -----------------------------------------------------------------


async def test_text_message_is_stored_once_under_its_customer(
    tg: httpx.AsyncClient, database: Database
) -> None:
    body = sample("telegram", "text")
    assert await post_telegram_twice(tg, body) == STORED_ONCE

    message = await only_message(database)
    assert (message.channel, message.direction, message.text) == ("telegram", "in", "/start")
    assert message.provider_message_id == "1111111:1365"  # chat id : message id
    assert message.sent_at == SENT_AT
    assert message.raw == body
    (identity,) = await rows(database, Identity)
    assert (identity.channel, identity.external_id) == ("telegram", "1111111")
    (customer,) = await rows(database, Customer)
    assert customer.display_name == "Test Firstname Test Lastname"
    assert customer.language == "en"
    (conversation,) = await rows(database, Conversation)
    assert (conversation.channel, conversation.customer_id) == ("telegram", customer.id)


async def test_edited_message_replaces_the_text_and_records_the_edit(
    tg: httpx.AsyncClient, database: Database
) -> None:
    await post_telegram(tg, sample("telegram", "text"))
    answers = await post_telegram_twice(tg, sample("telegram", "edited_message"))
    assert [a["edited"] for a in answers] == [1, 1]

    message = await only_message(database)
    assert message.text == "Edited text"
    assert message.edited_at == datetime(2015, 9, 7, 17, 23, 20, tzinfo=UTC)  # edit_date
    assert message.raw is not None
    assert [e["text"] for e in message.raw["edits"]] == ["/start"]  # the replay added none


async def test_voice_note_is_kept_as_an_audio_attachment_to_fetch(
    tg: httpx.AsyncClient, database: Database
) -> None:
    assert await post_telegram_twice(tg, sample("telegram", "voice")) == STORED_ONCE

    message = await only_message(database)
    assert message.text == ""
    attachment = await only_attachment(database, message)
    assert (attachment.kind, attachment.content_type) == ("audio", "audio/ogg")
    assert attachment.provider_file_id == "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX"
    assert attachment.size == 23000


async def test_audio_file_is_kept_as_an_audio_attachment(
    tg: httpx.AsyncClient, database: Database
) -> None:
    assert await post_telegram_twice(tg, sample("telegram", "audio")) == STORED_ONCE

    attachment = await only_attachment(database, await only_message(database))
    assert (attachment.kind, attachment.content_type) == ("audio", "audio/mpeg")
    assert attachment.provider_file_id == "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX"


async def test_document_is_kept_with_its_name_and_type(
    tg: httpx.AsyncClient, database: Database
) -> None:
    assert await post_telegram_twice(tg, sample("telegram", "document")) == STORED_ONCE

    attachment = await only_attachment(database, await only_message(database))
    assert (attachment.kind, attachment.filename) == ("file", "Testfile.pdf")
    assert attachment.content_type == "application/pdf"
    assert attachment.provider_file_id == "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX"
    assert attachment.size == 536392


async def test_photo_keeps_the_largest_size_and_its_caption_becomes_the_text(
    tg: httpx.AsyncClient, database: Database
) -> None:
    assert await post_telegram_twice(tg, sample("telegram", "photo")) == STORED_ONCE

    message = await only_message(database)
    assert message.text == "Test photo caption"
    attachment = await only_attachment(database, message)
    assert (attachment.kind, attachment.content_type) == ("image", "image/jpeg")
    assert attachment.provider_file_id == "AgADBAADbXXXXXXXXXXXGBdhD2l6_x1"  # the 800x600
    assert attachment.size == 68149


async def test_callback_query_is_acknowledged_and_ignored(
    tg: httpx.AsyncClient, database: Database
) -> None:
    answers = await post_telegram_twice(tg, sample("telegram", "callback_query"))
    assert [a["ignored"] for a in answers] == [1, 1]
    assert await nothing_stored(database)


# --- refusals and deliberate ignores --------------------------------------------------------


async def test_missing_secret_token_is_403_and_stores_nothing(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer = await post_telegram(sqlite_tg, sample("telegram", "text"), secret=None)
    assert answer.status_code == 403
    assert HEADER in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_wrong_secret_token_is_403_and_stores_nothing(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer = await post_telegram(sqlite_tg, sample("telegram", "text"), secret="not-our-secret")
    assert answer.status_code == 403
    assert "does not match" in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_without_a_configured_secret_every_update_is_refused(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET")
    reset_settings()
    for secret in (None, "", "anything"):
        answer = await post_telegram(sqlite_tg, sample("telegram", "text"), secret=secret)
        assert answer.status_code == 403
    assert "HELIOGRAPH_TELEGRAM_WEBHOOK_SECRET" in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_with_the_channel_off_updates_are_refused(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELIOGRAPH_TELEGRAM_BOT_TOKEN")
    reset_settings()
    answer = await post_telegram(sqlite_tg, sample("telegram", "text"))
    assert answer.status_code == 403
    assert "HELIOGRAPH_TELEGRAM_BOT_TOKEN" in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_malformed_json_is_400_and_stores_nothing(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer = await post_telegram(sqlite_tg, json.dumps(sample("telegram", "text")).encode()[:-7])
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]
    assert await nothing_stored(sqlite_database)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("message", "message_id"), "one-three-six-five", "message.message_id"),
        (("message", "chat"), "Testusername", "message.chat"),
        (("message", "date"), {"day": 7}, "message.date"),
        (("update_id",), None, "update_id"),
    ],
)
async def test_wrong_field_types_are_422_with_the_field_named(
    sqlite_tg: httpx.AsyncClient,
    sqlite_database: Database,
    path: tuple[str, ...],
    value: Any,
    field: str,
) -> None:
    body = copy.deepcopy(sample("telegram", "text"))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    answer = await post_telegram(sqlite_tg, body)

    assert answer.status_code == 422
    assert field in [f["field"] for f in answer.json()["fields"]], answer.json()
    assert await nothing_stored(sqlite_database)


async def test_a_body_that_is_not_an_object_is_422(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database
) -> None:
    answer = await post_telegram(sqlite_tg, json.dumps([sample("telegram", "text")]).encode())
    assert answer.status_code == 422
    assert await nothing_stored(sqlite_database)


async def test_an_update_type_we_do_not_know_is_acknowledged_and_ignored(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database
) -> None:
    body = {
        "update_id": 10002,
        "some_future_update": {"id": 7, "from": sample("telegram", "text")["message"]},
    }
    answer = await post_telegram(sqlite_tg, body)
    assert answer.status_code == 200
    assert answer.json()["ignored"] == 1
    assert await nothing_stored(sqlite_database)


async def test_a_group_chat_message_is_acknowledged_and_ignored(
    sqlite_tg: httpx.AsyncClient, sqlite_database: Database
) -> None:
    body = sample("telegram", "text")
    body["message"]["chat"] = {"id": -1001234567890, "type": "supergroup", "title": "Team"}
    answer = await post_telegram(sqlite_tg, body)
    assert answer.status_code == 200
    assert answer.json()["ignored"] == 1
    assert await nothing_stored(sqlite_database)


async def test_a_nul_character_is_dropped_not_a_500(
    tg: httpx.AsyncClient, database: Database
) -> None:
    body = sample("telegram", "text")
    body["message"]["text"] = "where\u0000 is it?"
    body["message"]["from"]["first_name"] = "Te\u0000st"
    assert (await post_telegram(tg, body)).status_code == 200
    assert (await only_message(database)).text == "where is it?"
    (customer,) = await rows(database, Customer)
    assert customer.display_name == "Test Test Lastname"
