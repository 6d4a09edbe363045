"""Slack inbound: recorded payloads in, what was stored (or deliberately not) out.

The fixtures in tests/fixtures/slack/ are the examples of Slack's documentation
(docs.slack.dev reference pages for message.im, message.channels, app_mention,
message_changed, message_deleted, bot_message, url_verification, the slash command
request and the block_actions payload), with only the stray trailing commas of the
published examples removed so they parse. Every one is replayed, also as Slack's own
retry (``X-Slack-Retry-Num``), to prove a repeat stores nothing new.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select

from crm_core.models import Customer, Identity
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox.models import Conversation, Message
from tests.utils.slack import RETRY, fixture, post_event, signed, slack_env


@pytest.fixture
def slack(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Nothing listens there: inbound must not depend on Slack's Web API being reachable
    # (bolt's lazy auth.test fails and the events are acknowledged all the same).
    slack_env(monkeypatch, "http://127.0.0.1:9/api/")
    yield
    reset_settings()


@pytest.fixture
async def sqlite_client(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """Negative paths: one engine is enough, they never reach the database code."""
    from service.app import create_app

    slack_env(monkeypatch, "http://127.0.0.1:9/api/")
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
    reset_settings()


async def replayed(client: httpx.AsyncClient, payload: dict[str, Any]) -> list[httpx.Response]:
    """The event, the same event again, and Slack's retry of it."""
    return [
        await post_event(client, payload),
        await post_event(client, payload),
        await post_event(client, payload, **RETRY),
    ]


async def stored(database: Database) -> list[tuple[Message, Conversation, Identity]]:
    async with database.read_session() as session:
        rows = await session.execute(
            select(Message, Conversation, Identity)
            .join(Conversation, Conversation.id == Message.conversation_id)  # type: ignore[arg-type]
            .join(Identity, Identity.id == Conversation.identity_id)  # type: ignore[arg-type]
            .order_by(Message.id)  # type: ignore[arg-type]
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def nothing_stored(database: Database) -> bool:
    async with database.read_session() as session:
        counts = [
            (await session.execute(select(func.count()).select_from(model))).scalar_one()
            for model in (Message, Conversation, Customer)
        ]
    return counts == [0, 0, 0]


# --- one test per fixture -------------------------------------------------------------


async def test_direct_message_becomes_one_threaded_message(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    responses = await replayed(client, fixture("message_im"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    ((message, conversation, identity),) = await stored(database)
    assert message.text == "Hello hello can you hear me?"
    assert message.channel == "slack" and message.direction == "in"
    assert message.provider_message_id == "D024BE91L:1355517523.000005"
    assert message.sent_at is not None and message.sent_at.year == 2012
    assert conversation.thread_key == "D024BE91L"
    assert identity.external_id == "T061EG9R6:U2147483697"
    assert message.raw is not None and "token" not in message.raw  # no verification token kept
    assert message.raw["event"]["channel_type"] == "im"


async def test_message_in_a_shared_channel_becomes_its_own_conversation(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    await post_event(client, fixture("message_im"))
    responses = await replayed(client, fixture("message_channels"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    rows = await stored(database)
    assert len(rows) == 2
    message, conversation, identity = rows[1]
    assert message.text == "Live long and prospect."
    assert message.provider_message_id == "C123ABC456:1355517523.000005"
    assert conversation.thread_key == "C123ABC456"
    assert conversation.id != rows[0][1].id
    assert identity.external_id == "T123ABC456:U123ABC456"


async def test_app_mention_is_stored_without_the_mention(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    responses = await replayed(client, fixture("app_mention"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    ((message, conversation, identity),) = await stored(database)
    assert message.text == "is it everything a river should be?"
    assert message.provider_message_id == "C123ABC456:1515449522.000016"
    assert conversation.thread_key == "C123ABC456"
    assert identity.external_id == "T123ABC456:U061F7AUR"


async def test_a_mention_and_its_channel_message_are_one_message(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    """Slack sends app_mention and message.channels (other event_ids) for one message."""
    mention = fixture("app_mention")
    as_message = fixture("message_channels")
    as_message["event"].update(
        user=mention["event"]["user"], ts=mention["event"]["ts"], text=mention["event"]["text"]
    )
    as_message["event_id"] = "Ev0MENTIONED"

    await post_event(client, mention)
    await post_event(client, as_message)

    ((message, _, _),) = await stored(database)
    assert message.provider_message_id == "C123ABC456:1515449522.000016"


async def test_message_changed_edits_the_stored_message(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    await post_event(client, fixture("message_channels"))

    responses = await replayed(client, fixture("message_changed"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    ((message, _, _),) = await stored(database)
    assert message.text == "Hello, world!"
    assert message.edited_at is not None and message.edited_at.year == 2013
    assert message.raw is not None
    assert [e["text"] for e in message.raw["edits"]] == ["Live long and prospect."]


async def test_an_edit_of_a_message_we_never_got_stores_nothing(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    responses = await replayed(client, fixture("message_changed"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert await nothing_stored(database)


async def test_message_deleted_is_acknowledged_and_changes_nothing(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    await post_event(client, fixture("message_channels"))

    responses = await replayed(client, fixture("message_deleted"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    ((message, _, _),) = await stored(database)
    assert message.text == "Live long and prospect."


async def test_bot_message_is_acknowledged_and_not_stored(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    responses = await replayed(client, fixture("bot_message"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert await nothing_stored(database)


async def test_url_verification_answers_the_challenge(
    client: httpx.AsyncClient, database: Database, slack: None
) -> None:
    responses = await replayed(client, fixture("url_verification"))

    assert [r.status_code for r in responses] == [200, 200, 200]
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert all(r.json() == {"challenge": challenge} for r in responses)
    assert await nothing_stored(database)


async def test_slash_command_is_acknowledged_logged_and_not_stored(
    client: httpx.AsyncClient,
    database: Database,
    slack: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = urlencode(fixture("slash_command")).encode()
    caplog.set_level(logging.INFO, logger="channels.slack")
    form = "application/x-www-form-urlencoded"

    responses = [
        await client.post("/webhooks/slack/commands", content=body, headers=signed(body, form)),
        await client.post(
            "/webhooks/slack/commands", content=body, headers={**signed(body, form), **RETRY}
        ),
    ]

    assert [r.status_code for r in responses] == [200, 200]
    assert "/weather" in responses[0].text  # the person who typed it is told, privately
    assert "/weather from U2147483697 in C2147483705 acknowledged" in caplog.text
    assert await nothing_stored(database)


async def test_ssl_check_of_the_command_url_is_answered(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    body = b"ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO"
    form = "application/x-www-form-urlencoded"

    response = await sqlite_client.post(
        "/webhooks/slack/commands", content=body, headers=signed(body, form)
    )

    assert response.status_code == 200
    assert await nothing_stored(sqlite_database)


async def test_block_action_is_acknowledged_logged_and_not_stored(
    client: httpx.AsyncClient,
    database: Database,
    slack: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = urlencode({"payload": json.dumps(fixture("block_actions"))}).encode()
    caplog.set_level(logging.INFO, logger="channels.slack")
    form = "application/x-www-form-urlencoded"

    responses = [
        await client.post("/webhooks/slack/interactions", content=body, headers=signed(body, form))
        for _ in range(2)
    ]

    assert [r.status_code for r in responses] == [200, 200]
    assert "block_actions from UA8RXUSPL acknowledged" in caplog.text
    assert await nothing_stored(database)


# --- what a customer message is not ---------------------------------------------------


async def test_our_own_posts_coming_back_are_not_customer_messages(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    echo = fixture("message_im")  # how Slack echoes the app's chat.postMessage
    echo["event"].update(user="U0HELIOBOT", bot_id="B0HELIOBOT", text="On it!")
    by_bot_user = fixture("message_im")
    by_bot_user["event"]["user"] = "U0HELIOBOT"
    by_bot_user["authorizations"] = [
        {"team_id": "T061EG9R6", "user_id": "U0HELIOBOT", "is_bot": True}
    ]

    for payload in (echo, by_bot_user):
        assert (await post_event(sqlite_client, payload)).status_code == 200
    assert await nothing_stored(sqlite_database)


async def test_a_channel_inside_our_own_workspace_is_not_a_customer_channel(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    internal = fixture("message_channels")
    internal["is_ext_shared_channel"] = False

    assert (await post_event(sqlite_client, internal)).status_code == 200
    assert await nothing_stored(sqlite_database)


async def test_unknown_event_type_is_acknowledged_and_ignored(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    reaction = fixture("message_channels")
    reaction["event"] = {  # Slack's reaction_added example
        "type": "reaction_added",
        "user": "U123ABC456",
        "item": {"type": "message", "channel": "C123ABC456", "ts": "1360782400.498405"},
        "reaction": "thumbsup",
        "item_user": "U222222222",
        "event_ts": "1360782804.083113",
    }
    rate_limited = {"token": "x", "type": "app_rate_limited", "team_id": "T123ABC456"}

    for payload in (reaction, rate_limited):
        assert (await post_event(sqlite_client, payload)).status_code == 200
    assert await nothing_stored(sqlite_database)


# --- refused requests -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["events", "commands", "interactions"])
async def test_bad_or_missing_signature_is_403_and_stores_nothing(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database, path: str
) -> None:
    body = json.dumps(fixture("message_im")).encode()
    wrong = signed(body, "application/json", secret="not-the-signing-secret-at-all")
    missing = {"Content-Type": "application/json"}

    for headers in (wrong, missing):
        response = await sqlite_client.post(
            f"/webhooks/slack/{path}", content=body, headers=headers
        )
        assert response.status_code == 403, response.text
    assert await nothing_stored(sqlite_database)


async def test_tampered_body_is_403(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    body = json.dumps(fixture("message_im")).encode()
    headers = signed(body, "application/json")
    tampered = body.replace(b"Hello hello", b"Send refund")

    response = await sqlite_client.post("/webhooks/slack/events", content=tampered, headers=headers)

    assert response.status_code == 403
    assert "does not match the body" in response.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_timestamp_older_than_five_minutes_is_403(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    body = json.dumps(fixture("message_im")).encode()
    stale = signed(body, "application/json", age_s=5 * 60 + 30)  # correctly signed, but old

    response = await sqlite_client.post("/webhooks/slack/events", content=body, headers=stale)

    assert response.status_code == 403
    assert "5 minutes" in response.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_slack_not_configured_refuses_everything(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELIOGRAPH_SLACK_BOT_TOKEN")
    reset_settings()
    body = json.dumps(fixture("message_im")).encode()

    response = await sqlite_client.post(
        "/webhooks/slack/events", content=body, headers=signed(body, "application/json")
    )

    assert response.status_code == 403
    assert "not configured" in response.json()["error"]
    assert await nothing_stored(sqlite_database)


@pytest.mark.parametrize(
    ("path", "body", "content_type", "problem"),
    [
        ("events", b'{"type": "event_callback", "event": {', "application/json", "not valid JSON"),
        ("events", b'{"type": "event_callback"}', "application/json", "event object"),
        ("events", b"[1, 2]", "application/json", "JSON object"),
        ("commands", b"text=94070", "application/x-www-form-urlencoded", "command"),
        ("interactions", b"payload=%7Bnope", "application/x-www-form-urlencoded", "JSON"),
    ],
)
async def test_malformed_body_is_400_with_the_reason(
    sqlite_client: httpx.AsyncClient,
    sqlite_database: Database,
    path: str,
    body: bytes,
    content_type: str,
    problem: str,
) -> None:
    response = await sqlite_client.post(
        f"/webhooks/slack/{path}", content=body, headers=signed(body, content_type)
    )

    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert await nothing_stored(sqlite_database)


async def test_message_event_without_a_channel_is_400(
    sqlite_client: httpx.AsyncClient, sqlite_database: Database
) -> None:
    broken = copy.deepcopy(fixture("message_im"))
    del broken["event"]["channel"]

    response = await post_event(sqlite_client, broken)

    assert response.status_code == 400
    assert "channel" in response.json()["error"]
    assert await nothing_stored(sqlite_database)
