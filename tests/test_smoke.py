"""The first path a user takes: a signed message in, a reply out, on both databases."""

from __future__ import annotations

import httpx

from heliograph.db import Database
from tests.utils.factories import member_with_token
from tests.utils.jobs import run_jobs
from tests.utils.signing import inbound_body, signed_headers


async def test_signed_message_is_threaded_and_replay_is_a_no_op(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = inbound_body("msg-1", "cust-1", "hi there", name="Rosa Costa")
    first = await client.post("/api/v1/inbound", content=body, headers=signed_headers(body))
    again = await client.post("/api/v1/inbound", content=body, headers=signed_headers(body))
    assert first.status_code == 200 and again.status_code == 200
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert again.json()["conversation_id"] == first.json()["conversation_id"]

    _, auth = await member_with_token(database)
    conversation = await client.get(
        f"/api/v1/conversations/{first.json()['conversation_id']}", headers=auth
    )
    assert [m["text"] for m in conversation.json()["messages"]] == ["hi there"]
    assert conversation.json()["customer"]["display_name"] == "Rosa Costa"


async def test_reply_without_outbound_url_fails_visibly(
    client: httpx.AsyncClient, database: Database
) -> None:
    body = inbound_body("msg-2")
    conv_id = (
        await client.post("/api/v1/inbound", content=body, headers=signed_headers(body))
    ).json()["conversation_id"]
    _, auth = await member_with_token(database)
    sent = await client.post(
        f"/api/v1/conversations/{conv_id}/reply", json={"text": "on it"}, headers=auth
    )
    assert sent.status_code == 202 and sent.json()["delivery_status"] == "queued"
    assert (await run_jobs(database)).get("dead") == 1
    messages = (await client.get(f"/api/v1/conversations/{conv_id}", headers=auth)).json()[
        "messages"
    ]
    assert messages[-1]["delivery_status"] == "failed"
    assert "HELIOGRAPH_API_OUTBOUND_URL" in messages[-1]["delivery_error"]
