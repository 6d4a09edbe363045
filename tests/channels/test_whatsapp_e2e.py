"""End to end, as separate processes: ``heliograph serve`` and the sandbox's fake Twilio and
fake WhatsApp Cloud API, for SMS, WhatsApp through Twilio and WhatsApp through Meta.

A customer writes through the sandbox, which posts the provider's signed webhook to the
service's public URL (Twilio's form with X-Twilio-Signature; Meta's JSON with
X-Hub-Signature-256, after the GET verification handshake); an agent answers through the
REST API; the fake provider receives the reply, then reports "sent" and "delivered" to the
service, signed as the provider signs; the reply ends "delivered". Voice notes are fetched
from the fakes with the provider's credentials. One service and one sandbox serve the module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_core.models import Identity
from heliograph.db import Database
from heliograph.settings import Settings
from inbox.models import Attachment, Conversation, Message
from tests.utils.factories import member_with_token
from tests.utils.processes import Service, free_port, start_heliograph
from tests.utils.schema import migrated_sqlite

pytestmark = pytest.mark.slow

SMS_FROM = "+15017122661"
WHATSAPP_FROM = "+14155238886"
VERIFY_TOKEN = "test-whatsapp-verify-token-0123"
SERVE_PORT = free_port()  # the public URL the providers (the sandbox) call
PUBLIC = f"http://127.0.0.1:{SERVE_PORT}"
PROVIDERS = {
    "HELIOGRAPH_TWILIO_ACCOUNT_SID": "AC" + "7" * 32,
    "HELIOGRAPH_TWILIO_AUTH_TOKEN": "test-twilio-auth-token-0123456789",
    "HELIOGRAPH_TWILIO_SMS_FROM": SMS_FROM,
    "HELIOGRAPH_TWILIO_WHATSAPP_FROM": WHATSAPP_FROM,
    "HELIOGRAPH_WHATSAPP_ACCESS_TOKEN": "test-whatsapp-access-token-0123",
    "HELIOGRAPH_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "HELIOGRAPH_WHATSAPP_APP_SECRET": "test-whatsapp-app-secret-0123456789",
    "HELIOGRAPH_WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
    "HELIOGRAPH_PUBLIC_URL": PUBLIC,
}


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(tmp_path_factory.mktemp("db") / "heliograph.db")


SANDBOX_ENV = PROVIDERS


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, db_url: str, sandbox_url: str
) -> Iterator[Service]:
    sandbox = sandbox_url
    tmp = tmp_path_factory.mktemp("serve")
    env = {
        **PROVIDERS,
        "HELIOGRAPH_DATABASE_URL": db_url,
        "HELIOGRAPH_TWILIO_API_BASE": f"{sandbox}/twilio",
        "HELIOGRAPH_WHATSAPP_API_BASE": f"{sandbox}/whatsapp",
        "HELIOGRAPH_MEDIA_DIR": str(tmp / "media"),
    }
    serve = start_heliograph(["serve"], env, tmp / "serve.log", SERVE_PORT)
    yield serve
    serve.stop()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(Settings(database_url=db_url))
    yield database
    await database.dispose()


_auth: dict[str, str] = {}


async def agent_reply(service: Service, db: Database, conversation_id: int, text: str) -> int:
    if not _auth:
        _auth.update((await member_with_token(db))[1])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        answer = await http.post(
            f"/api/v1/conversations/{conversation_id}/reply", json={"text": text}, headers=_auth
        )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


async def eventually(
    what: str, check: Callable[[], Awaitable[Any]], service: Service, within: float = 20
) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert service.proc.poll() is None, f"serve died:\n{service.log()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {within}s\n{service.log()[-3000:]}")
        await asyncio.sleep(0.2)


async def say(sandbox: httpx.AsyncClient, channel: str, **body: Any) -> dict[str, Any]:
    answer = await sandbox.post(f"/_sandbox/say/{channel}", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def conversation_of(db: Database, channel: str, phone: str) -> int:
    async with db.read_session() as session:
        stmt = (
            select(Conversation.id)
            .join(Identity, Identity.id == Conversation.identity_id)
            .where(Conversation.channel == channel, Identity.external_id == phone)
        )
        found = (await session.execute(stmt)).scalar_one_or_none()
    assert found is not None, f"no {channel} conversation with {phone}"
    return int(found)


async def calls(sandbox: httpx.AsyncClient, provider: str, method: str) -> list[dict[str, Any]]:
    params = {"provider": provider, "method": method}
    return [c["params"] for c in (await sandbox.get("/_sandbox/calls", params=params)).json()]


def delivered(db: Database, message_id: int) -> Callable[[], Awaitable[Message | None]]:
    async def check() -> Message | None:
        async with db.read_session() as session:
            message = await session.get(Message, message_id)
        return message if message is not None and message.delivery_status == "delivered" else None

    return check


def voice_note_of(db: Database, conversation_id: int) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        async with db.read_session() as session:
            stmt = (
                select(Attachment.storage_path)
                .join(Message, Message.id == Attachment.message_id)
                .where(Message.conversation_id == conversation_id)
            )
            return (await session.execute(stmt)).scalar()

    return check


def read(path: str | None) -> bytes:
    """The bytes of a stored attachment (a plain function: file I/O off the async tests)."""
    assert path is not None
    return Path(path).read_bytes()


async def test_sms_in_reply_out_and_delivered(
    service: Service, sandbox: httpx.AsyncClient, db: Database
) -> None:
    written = await say(sandbox, "sms", text="Where is my parcel?", **{"from": "+447700900123"})
    assert written["webhook"] == f"{PUBLIC}/webhooks/twilio/messages"
    conversation = await conversation_of(db, "sms", "+447700900123")

    message_id = await agent_reply(service, db, conversation, "It ships today.")
    (create,) = await eventually(
        "messages.create", lambda: calls(sandbox, "twilio", "messages.create"), service
    )
    assert (create["To"], create["From"], create["Body"]) == (
        "+447700900123",
        SMS_FROM,
        "It ships today.",
    )
    assert create["StatusCallback"] == f"{PUBLIC}/webhooks/twilio/status"

    reply = await eventually("delivered status", delivered(db, message_id), service)
    assert (reply.external_id, reply.delivery_error) == (create["Sid"], None)
    callbacks = (await sandbox.get("/_sandbox/twilio")).json()["callbacks"]
    mine = [c for c in callbacks if c["url"].endswith("/webhooks/twilio/status")]
    assert [c["status"] for c in mine if c.get("answer") == 200][-2:] == ["sent", "delivered"]
    assert all(c.get("answer") != 403 for c in mine)  # every signature was accepted


async def test_whatsapp_through_twilio_with_a_voice_note(
    service: Service, sandbox: httpx.AsyncClient, db: Database
) -> None:
    await say(sandbox, "whatsapp", text="Olá!", name="Rosa Costa", **{"from": "+351912345678"})
    await say(sandbox, "whatsapp", media="voice", **{"from": "+351912345678"})
    conversation = await conversation_of(db, "whatsapp", "+351912345678")
    path = await eventually("stored voice note", voice_note_of(db, conversation), service)
    assert read(path)[:4] == b"OggS"  # downloaded with basic auth from the fake

    message_id = await agent_reply(service, db, conversation, "Boa tarde!")
    (create,) = await eventually(
        "messages.create", lambda: calls(sandbox, "twilio", "messages.create"), service
    )
    assert (create["To"], create["From"]) == ("whatsapp:+351912345678", f"whatsapp:{WHATSAPP_FROM}")
    await eventually("delivered status", delivered(db, message_id), service)
    assert await calls(sandbox, "whatsapp", "messages") == []  # Twilio carried it, not Meta


async def test_whatsapp_through_the_cloud_api_with_a_voice_note(
    service: Service, sandbox: httpx.AsyncClient, db: Database
) -> None:
    subscribed = await sandbox.post(
        "/_sandbox/whatsapp/subscribe",
        json={"callback_url": f"{PUBLIC}/webhooks/whatsapp", "verify_token": VERIFY_TOKEN},
    )
    assert subscribed.json()["verified"] is True, subscribed.text
    wrong = {"callback_url": f"{PUBLIC}/webhooks/whatsapp", "verify_token": "a-guess"}
    refused = await sandbox.post("/_sandbox/whatsapp/subscribe", json=wrong)
    assert refused.json()["status"] == 403

    said = await say(
        sandbox, "whatsapp_cloud", text="Hola", name="Ana Ruiz", **{"from": "5491123456789"}
    )
    assert said["heliograph"]["stored"] == 1
    await say(sandbox, "whatsapp_cloud", media="voice", **{"from": "5491123456789"})
    conversation = await conversation_of(db, "whatsapp", "+5491123456789")
    path = await eventually("stored voice note", voice_note_of(db, conversation), service)
    assert read(path)[:4] == b"OggS"  # media id -> URL -> bytes, bearer token

    message_id = await agent_reply(service, db, conversation, "¡Hola Ana!")
    (sent,) = await eventually("messages", lambda: calls(sandbox, "whatsapp", "messages"), service)
    assert (sent["to"], sent["type"], sent["text"]["body"]) == (
        "5491123456789",
        "text",
        "¡Hola Ana!",
    )
    reply = await eventually("delivered status", delivered(db, message_id), service)
    assert reply.external_id == sent["id"]
