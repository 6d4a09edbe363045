"""Canned responses in the web app and the REST API (issue #16): CRUD and permissions
through /api/v1/canned-responses, the /canned page's forms, and the composer's fragment
/canned/suggest whose items carry the text filled for the conversation."""

from __future__ import annotations

import httpx

from heliograph.db import Database
from inbox import canned as service
from tests.utils.factories import make_member, member_with_token, receive
from tests.utils.web import signed_in

API = "/api/v1/canned-responses"


async def test_the_api_crud_and_permissions(client: httpx.AsyncClient, database: Database) -> None:
    _, agent = await member_with_token(database, "agent", "Ada Agent")
    _, lead = await member_with_token(database, "lead", "Lia Lead")
    _, other = await member_with_token(database, "agent", "Ben Other")

    body = {"shortcut": "refund", "title": "Refund", "text": "Hi {{customer.first_name}}"}
    refused = await client.post(API, json={**body, "team": True}, headers=agent)
    assert refused.status_code == 403 and "leads and admins" in refused.json()["error"]
    team = await client.post(API, json={**body, "team": True}, headers=lead)
    assert team.status_code == 201, team.text
    assert team.json()["team"] is True and team.json()["owner_member_id"] is None
    mine = await client.post(
        API, json={**body, "shortcut": "thanks", "language": "en"}, headers=agent
    )
    assert mine.status_code == 201 and mine.json()["team"] is False
    theirs = await client.post(API, json={**body, "shortcut": "thanks"}, headers=other)
    assert theirs.status_code == 201

    dup = await client.post(API, json={**body, "team": True}, headers=lead)
    assert dup.status_code == 422 and "already used" in dup.json()["error"]
    bad = await client.post(API, json={**body, "shortcut": "two words"}, headers=agent)
    assert bad.status_code == 422 and "shortcut" in bad.json()["error"]
    unknown_field = await client.post(API, json={**body, "colour": "red"}, headers=agent)
    assert unknown_field.status_code == 422
    assert (await client.get(API)).status_code == 401

    listed = (await client.get(API, headers=agent)).json()
    assert [r["shortcut"] for r in listed] == ["refund", "thanks"]
    assert (await client.get(f"{API}/{theirs.json()['id']}", headers=agent)).status_code == 404
    found = (await client.get(API, params={"q": "than"}, headers=agent)).json()
    assert [r["id"] for r in found] == [mine.json()["id"]]

    tid, mid = team.json()["id"], mine.json()["id"]
    assert (
        await client.patch(f"{API}/{tid}", json={"title": "x"}, headers=agent)
    ).status_code == 403
    changed = await client.patch(f"{API}/{tid}", json={"title": "Refunds"}, headers=lead)
    assert changed.status_code == 200 and changed.json()["title"] == "Refunds"
    assert changed.json()["text"] == body["text"]
    anyl = await client.patch(f"{API}/{mid}", json={"language": None}, headers=agent)
    assert anyl.json()["language"] is None
    assert (await client.delete(f"{API}/{tid}", headers=agent)).status_code == 403
    assert (await client.delete(f"{API}/{mid}", headers=other)).status_code == 404
    assert (await client.delete(f"{API}/{mid}", headers=agent)).status_code == 204
    assert (await client.delete(f"{API}/{tid}", headers=lead)).status_code == 204
    assert (await client.get(API, headers=agent)).json() == []


async def test_the_page_and_the_composer_fragment(
    client: httpx.AsyncClient, database: Database
) -> None:
    result = await receive(database, "m-1", "cust-1", name="Maria Silva", email="maria@example.com")
    async with database.session() as session:
        lead = await make_member(session, "Lia Lead", "lead")
        await session.commit()
        lead_id = int(lead.id)  # type: ignore[arg-type]
    csrf = signed_in(client, lead_id)
    html = {"Accept": "text/html"}

    empty = await client.get("/canned", headers=html)
    assert empty.status_code == 200 and "No canned responses yet." in empty.text

    form = {
        "csrf_token": csrf,
        "shortcut": "refund",
        "title": "Refund policy",
        "text": "Hi {{customer.first_name}} <{{customer.email}}>, "
        "{{agent.name}} here. {{order.id}}",
        "language": "",
        "team": "1",
    }
    assert (await client.post("/canned", data={**form, "csrf_token": "wrong"})).status_code == 403
    created = await client.post("/canned", data=form)
    assert created.status_code == 303 and created.headers["location"] == "/canned"
    again = await client.post("/canned", data=form)
    assert again.status_code == 422 and "already used" in again.text
    listed = await client.get("/canned", headers=html)
    assert "/refund" in listed.text and "Team" in listed.text

    fragment = await client.get(
        "/canned/suggest",
        params={"conversation_id": result.conversation_id, "q": "ref"},
        headers={**html, "HX-Request": "true"},
    )
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert (
        'data-fill="Hi Maria &lt;maria@example.com&gt;, Lia Lead here. {{order.id}}"'
        in fragment.text
    )
    assert 'data-unknown="order.id"' in fragment.text
    none = await client.get(
        "/canned/suggest",
        params={"conversation_id": result.conversation_id, "q": "<b>zz"},
        headers=html,
    )
    assert "No canned response matches" in none.text and "<b>zz" not in none.text

    assert (await client.get(API, headers=html)).status_code == 401  # the API needs a token
    async with database.session() as session:
        (row,) = await service.list_for(session, lead)
    edit = await client.get(f"/canned/{row.id}/edit", headers=html)
    assert edit.status_code == 200 and 'value="Refund policy"' in edit.text
    saved = await client.post(
        f"/canned/{row.id}", data={**form, "title": "Refunds", "language": "pt"}
    )
    assert saved.status_code == 303
    assert "Refunds" in (await client.get("/canned", headers=html)).text
    gone = await client.post(f"/canned/{row.id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert "No canned responses yet." in (await client.get("/canned", headers=html)).text
