"""Slack attachments out (#16): an agent's files reach the customer's Slack thread through
slack_sdk's ``files_upload_v2`` against the sandbox's fake Slack (getUploadURLExternal,
the upload URL, completeUploadExternal), with the exact bytes and names; what Slack would
not take is refused with the reason (a 422, from one place: web/errors.py) before anything
is stored or sent; and a Slack failure half-way never shows a file twice."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select

from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox.models import Attachment, Conversation, Message
from tests.utils.factories import member_with_token, receive
from tests.utils.jobs import run_jobs, run_jobs_until
from tests.utils.slack import BOT_TOKEN, SIGNING_SECRET, fixture, post_event, slack_env
from tests.utils.web import signed_in

SANDBOX_ENV = {
    "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
    "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
}
SANDBOX_RESETS = ("/_sandbox/slack", "/_sandbox/fail?provider=slack")
CHANNEL, THREAD = "C123ABC456", "1355517523.000005"  # message_channels.json's channel and ts
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + b"%\xe2\xe3\xcf\xd3 invoice 2026-12\n" * 64


@pytest.fixture
async def slack(
    sandbox: httpx.AsyncClient,
    sandbox_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> httpx.AsyncClient:
    slack_env(monkeypatch, f"{sandbox_url}/slack/api/")
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()
    return sandbox


def b64(name: str, ctype: str, data: bytes) -> dict[str, str]:
    return {
        "filename": name,
        "content_type": ctype,
        "data_base64": base64.b64encode(data).decode(),
    }


async def conversation_in_shared_channel(client: httpx.AsyncClient, database: Database) -> int:
    """The customer writes in a Slack Connect channel: the answer goes in their thread."""
    assert (await post_event(client, fixture("message_channels"))).status_code == 200
    async with database.read_session() as session:
        return int((await session.execute(select(func.max(Conversation.id)))).scalar_one())


async def agent_replies(
    client: httpx.AsyncClient, database: Database, *bodies: dict[str, Any]
) -> list[httpx.Response]:
    """The customer writes; an agent answers each of ``bodies`` over the REST API."""
    conversation = await conversation_in_shared_channel(client, database)
    _, auth = await member_with_token(database)
    path = f"/api/v1/conversations/{conversation}/reply"
    return [await client.post(path, json=body, headers=auth) for body in bodies]


async def reply_row(database: Database, message_id: int) -> Message:
    async with database.read_session() as session:
        found = await session.get(Message, message_id)
    assert found is not None
    return found


async def calls(slack: httpx.AsyncClient, method: str) -> list[dict[str, Any]]:
    answer = await slack.get("/_sandbox/calls", params={"provider": "slack", "method": method})
    return [c["params"] for c in answer.json()]


async def file_messages(slack: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The messages with files in the customer's channel, as the fake Slack keeps them."""
    kept = (await slack.get(f"/_sandbox/slack/messages/{CHANNEL}")).json()
    return [m for m in kept if m.get("files")]


async def test_an_image_and_a_pdf_reach_the_customers_thread_as_sent(
    client: httpx.AsyncClient, database: Database, slack: httpx.AsyncClient
) -> None:
    body = {
        "text": "Here are the photo & the invoice",
        "attachments": [
            b64("photo.png", "image/png", PNG),
            b64("invoice 12.pdf", "application/pdf", PDF),
        ],
    }
    (answer,) = await agent_replies(client, database, body)
    assert answer.status_code == 202, answer.text

    await run_jobs(database)

    row = await reply_row(database, answer.json()["id"])
    assert row.delivery_status == "delivered", row.delivery_error
    (shared,) = await file_messages(slack)
    # One Slack message: the text introduces the files (Slack's escaping of &), in the thread.
    assert shared["text"] == "Here are the photo &amp; the invoice"
    assert shared["thread_ts"] == THREAD
    assert [(f["name"], f["title"], f["size"]) for f in shared["files"]] == [
        ("photo.png", "photo.png", len(PNG)),
        ("invoice 12.pdf", "invoice 12.pdf", len(PDF)),
    ]
    auth = {"Authorization": f"Bearer {BOT_TOKEN}"}
    async with httpx.AsyncClient(timeout=10) as http:
        downloaded = [(await http.get(f["url_private"], headers=auth)) for f in shared["files"]]
    assert [d.content for d in downloaded] == [PNG, PDF]
    assert row.external_id == f"{CHANNEL}:{shared['ts']}"
    (completed,) = await calls(slack, "files.completeUploadExternal")
    assert (completed["channel_id"], completed["thread_ts"]) == (CHANNEL, THREAD)
    assert await calls(slack, "chat.postMessage") == []  # nothing posted besides the files


async def test_in_a_dm_a_long_text_goes_first_and_its_last_part_introduces_the_file(
    client: httpx.AsyncClient, database: Database, slack: httpx.AsyncClient
) -> None:
    assert (await post_event(client, fixture("message_im"))).status_code == 200
    async with database.read_session() as session:
        conversation = (await session.execute(select(func.max(Conversation.id)))).scalar_one()
    _, auth = await member_with_token(database)
    text = "First: " + "word " * 700 + "\n\nLast: the invoice. " + "more " * 100  # two parts
    answer = await client.post(
        f"/api/v1/conversations/{conversation}/reply",
        json={"text": text, "attachments": [b64("invoice.pdf", "application/pdf", PDF)]},
        headers=auth,
    )
    assert answer.status_code == 202, answer.text

    await run_jobs(database)

    assert (await reply_row(database, answer.json()["id"])).delivery_status == "delivered"
    dm = (await slack.get("/_sandbox/slack/messages/D024BE91L")).json()
    assert [(m["text"][:6], [f["name"] for f in m.get("files", [])]) for m in dm] == [
        ("First:", []),
        ("Last: ", ["invoice.pdf"]),
    ]
    assert all("thread_ts" not in m for m in dm)  # a DM answer is a plain chat line


async def test_a_file_the_channel_cannot_take_is_a_422_with_the_reason_and_nothing_is_sent(
    client: httpx.AsyncClient, database: Database, slack: httpx.AsyncClient
) -> None:
    conversation = await conversation_in_shared_channel(client, database)
    agent, auth = await member_with_token(database)

    # From the Slack conversation's page (a browser's form post): 11 files, where Slack
    # takes 10 per message. The page answers 422 and says why.
    csrf = signed_in(client, agent.id)  # type: ignore[arg-type]
    pages = [("files", (f"page-{n}.png", PNG, "image/png")) for n in range(11)]
    page = await client.post(
        f"/conversations/{conversation}/reply",
        data={"text": "All pages"},
        files=pages,
        headers={"X-CSRF-Token": csrf, "Accept": "text/html"},
    )
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "slack takes at most 10 attachment(s) per reply, not 11" in page.text

    # Over the REST API, JSON with the reason. (Its schema already takes at most 10 files,
    # none empty, and Slack takes any type up to 1 GB: a type SMS cannot carry, then.)
    sms = await receive(database, "SM-refused", "+14155550100", channel="sms")
    exe = b64("setup.exe", "application/x-msdownload", b"MZ" + bytes(64))
    api = await client.post(
        f"/api/v1/conversations/{sms.conversation_id}/reply",
        json={"text": "The installer", "attachments": [exe]},
        headers=auth,
    )
    assert api.status_code == 422
    assert api.json() == {
        "error": "sms cannot send setup.exe: type application/x-msdownload is not accepted"
    }

    async with database.read_session() as session:
        outgoing = select(func.count()).select_from(Message).where(Message.direction == "out")  # type: ignore[arg-type]
        replies = (await session.execute(outgoing)).scalar()
        files = (await session.execute(select(func.count()).select_from(Attachment))).scalar()
    assert (replies, files) == (0, 0)
    await run_jobs(database)
    assert (await slack.get("/_sandbox/slack/files")).json() == []
    assert await calls(slack, "chat.postMessage") == []


async def test_a_failed_completion_is_retried_and_the_customer_sees_each_file_once(
    client: httpx.AsyncClient, database: Database, slack: httpx.AsyncClient
) -> None:
    body = {"text": "", "attachments": [b64("invoice.pdf", "application/pdf", PDF)]}
    (answer,) = await agent_replies(client, database, body)
    assert answer.status_code == 202, answer.text
    await slack.post("/_sandbox/slack/fail-next", json={"method": "files.completeUploadExternal"})

    assert (await run_jobs(database, rounds=1)).get("retry") == 1
    row = await reply_row(database, answer.json()["id"])
    assert row.delivery_status == "queued" and "500" in (row.delivery_error or "")
    assert await file_messages(slack) == []  # uploaded, never shared

    async def delivered() -> bool:
        return (await reply_row(database, answer.json()["id"])).delivery_status == "delivered"

    assert await run_jobs_until(database, delivered)
    (shared,) = await file_messages(slack)
    assert [(f["name"], f["size"]) for f in shared["files"]] == [("invoice.pdf", len(PDF))]
    assert "text" not in shared or shared["text"] == ""  # no text: no initial_comment
    uploads = (await slack.get("/_sandbox/slack/files")).json()
    # The first try's upload was never completed (Slack discards it); one file is shared.
    assert [(u["uploaded"], u["completed"]) for u in uploads] == [(True, False), (True, True)]
    assert len(await calls(slack, "files.completeUploadExternal")) == 1
    await run_jobs(database)  # nothing left to do: no second share
    assert len(await file_messages(slack)) == 1


async def test_the_fake_refuses_to_complete_a_file_it_never_received(
    slack: httpx.AsyncClient, sandbox_url: str
) -> None:
    web = AsyncWebClient(token=BOT_TOKEN, base_url=f"{sandbox_url}/slack/api/")
    with pytest.raises(SlackApiError) as unknown:
        await web.files_completeUploadExternal(files=[{"id": "F0NOSUCH01"}], channel_id=CHANNEL)
    assert unknown.value.response["error"] == "file_not_found"

    started = await web.files_getUploadURLExternal(filename="a.pdf", length=len(PDF))
    with pytest.raises(SlackApiError) as never_uploaded:
        await web.files_completeUploadExternal(
            files=[{"id": started["file_id"]}], channel_id=CHANNEL
        )
    assert never_uploaded.value.response["error"] == "file_not_found"
    assert "never uploaded" in never_uploaded.value.response["detail"]
    assert await file_messages(slack) == []
