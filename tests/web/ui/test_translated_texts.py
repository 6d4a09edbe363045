# ruff: noqa: RUF001 (the Russian pages are asserted in Cyrillic)
"""The services' own words on the pages, in the viewer's language (issue #16): a routing
reason and a handoff in the conversation's thread, the customer's timeline and an
intervention's reason, and a service's refusal (a canned response's, no channel to write
on) are Russian for a Russian-speaking member, while the REST API keeps saying them in
English (heliograph.texts: a Text is its English, and remembers its template)."""

from __future__ import annotations

import html
import json
from typing import Any

import httpx
from sqlalchemy import update

from crm_core.models import Customer, Identity, Intervention
from heliograph.db import Database
from heliograph.texts import Plural, Text, dump, load, message
from routing.models import Assignment
from tests.utils.crm_world import days_ago, ev, ingest, make_programs
from tests.utils.db import rows
from tests.utils.factories import make_member, member_with_token, receive
from tests.utils.web import signed_in
from web.ui.render import from_query, shown, to_query, translations

HTML = {"Accept": "text/html"}


async def _member(database: Database, name: str, role: str, **kw: Any) -> int:
    async with database.session() as session:
        member = await make_member(session, name, role, **kw)
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


def _page(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text[:500]
    return html.unescape(response.text)


def test_a_text_is_its_english_and_translates_with_its_parameters() -> None:
    ru = translations("ru")
    reason = Text(
        "%(name)s — %(parts)s",
        name="Ben Ortiz",
        parts=[
            "Berlin 10:00",
            Text("speaks %(lang)s", lang="pt"),
            Text("%(load)s/%(capacity)s open", load=1, capacity=8),
        ],
    )
    assert reason == "Ben Ortiz — Berlin 10:00, speaks pt, 1/8 open" and type(str(reason)) is str
    assert reason.localized(ru) == "Ben Ortiz — Berlin 10:00, говорит на pt, 1/8 открыто"
    joined = Text("handoff from %(name)s (shift ended): ", name="Ana") + reason
    assert joined == "handoff from Ana (shift ended): " + str(reason)
    assert joined.localized(ru).startswith("передача от Ana (смена закончилась): Ben Ortiz")
    assert load(dump(joined), "old") == joined and load(None, "old") == "old"
    assert shown(ru, dump(joined), "ignored") == joined.localized(ru)
    days = Plural(
        "no course activity for %(num)s day (since %(since)s)",
        "no course activity for %(num)s days (since %(since)s)",
        3,
        since="2026-01-01",
    )
    assert days == "no course activity for 3 days (since 2026-01-01)"
    assert load(dump(days)).localized(ru) == "нет активности в курсе 3 дня (с 2026-01-01)"  # type: ignore[union-attr]
    assert message(ValueError(Text("a note needs some text"))).localized(ru) == (  # type: ignore[attr-defined]
        "в заметке должен быть текст"
    )
    # A message carried in a URL is translated only when its templates are ours.
    assert shown(ru, from_query(to_query(Text("no channel identity to write to")))) == (
        "нет учётной записи ни в одном канале, куда можно написать"
    )
    forged = json.dumps({"t": "%(x)999999999s", "p": {"x": "y"}})
    assert from_query(forged) == "" and from_query("plain words") == "plain words"
    known = "no course activity for %(num)s day (since %(since)s)"
    plural = json.dumps({"t": known, "pl": "%(num)999999999s", "p": {"num": 2}})
    assert from_query(plural) == ""


async def test_routing_reasons_and_handoffs_are_russian_on_the_page_and_english_in_the_api(
    client: httpx.AsyncClient, database: Database
) -> None:
    olga = await _member(
        database, "Olga Ivanova", "lead", timezone="Europe/Moscow", ui_language="ru"
    )
    ben = await _member(database, "Ben Ortiz", "agent", timezone="Europe/Berlin")
    cara = await _member(database, "Cara Diaz", "agent")
    got = await receive(database, "tt-1", "cust-tt", text="Where is my order?", name="Ana Silva")
    cid = got.conversation_id
    h = {"X-CSRF-Token": signed_in(client, olga)}

    # A lead assigns to Ben: the thread's line says why, in Russian.
    assign = {"member_id": ben}
    assigned = await client.post(f"/conversations/{cid}/assign", data=assign, headers=h)
    assert assigned.status_code == 303
    # A lead hands it from Ben to Cara: the handoff line and its assignment line.
    handed = await client.post(
        f"/conversations/{cid}/handoff", data={"to_member_id": cara}, headers=h
    )
    assert handed.status_code == 303
    thread = _page(await client.get(f"/conversations/{cid}/thread", headers=HTML))
    assert "назначил(а) Olga Ivanova: Ben Ortiz — Berlin" in thread
    assert "открыто" in thread
    assert "передача (Olga Ivanova) от Ben Ortiz: к Cara Diaz" in thread
    assert "assigned by" not in thread and "handoff by" not in thread

    # An older row, written before the template was stored, shows its English.
    async with database.session() as session:
        await session.execute(
            update(Assignment).where(Assignment.conversation_id == cid).values(reason_text=None)  # type: ignore[arg-type]
        )
        await session.commit()
    old = _page(await client.get(f"/conversations/{cid}/thread", headers=HTML))
    assert "assigned by Olga Ivanova to Ben Ortiz — Berlin" in old

    # The REST API says the same in English, as before.
    _, auth = await member_with_token(database, "lead", "Lena Lead")
    url = f"/api/v1/routing/conversations/{cid}/assignments"
    history = (await client.get(url, headers=auth)).json()
    assert history[0]["reason"].startswith("assigned by Olga Ivanova to Ben Ortiz — Berlin")
    assert set(history[0]) == set(history[1]) and "reason_text" not in history[0]
    handoffs = (await client.get(f"/api/v1/conversations/{cid}/handoffs", headers=auth)).json()
    assert handoffs[0]["reason"].startswith("handoff by Olga Ivanova from Ben Ortiz: to Cara Diaz")
    assert "reason_text" not in handoffs[0]


async def test_a_refusal_of_the_service_is_russian_on_the_page_and_english_in_the_api(
    client: httpx.AsyncClient, database: Database
) -> None:
    olga = await _member(database, "Olga Ivanova", "agent", ui_language="ru")
    ben = await _member(database, "Ben Ortiz", "agent")
    got = await receive(database, "tt-2", "cust-tt2", text="Hello", name="Ana Silva")
    h = {"X-CSRF-Token": signed_in(client, olga)}

    # The canned responses' own check (inbox.canned), shown on the canned page.
    bad = await client.post(
        "/canned", data={"shortcut": "Not valid!", "title": "x", "text": "y"}, headers=h
    )
    assert bad.status_code == 422
    assert "сокращение: от 1 до 64 строчных латинских букв" in html.unescape(bad.text)
    # Routing's refusal of an agent's assignment, on the conversation page.
    refused = await client.post(
        f"/conversations/{got.conversation_id}/assign", data={"member_id": ben}, headers=h
    )
    assert refused.status_code == 409
    assert "агенты могут брать диалоги только себе" in html.unescape(refused.text)

    # No channel to write on: every identity of the customer opted out.
    async with database.session() as session:
        await session.execute(
            update(Identity).where(Identity.customer_id == got.customer_id).values(opted_out=True)  # type: ignore[arg-type]
        )
        await session.commit()
    write = await client.post(f"/customers/{got.customer_id}/write", headers=h)
    assert write.status_code == 303
    notice = _page(await client.get(write.headers["location"], headers=HTML))
    assert "отказался от всех каналов (или недоступен ни в одном)" in notice

    # The REST API keeps the English.
    _, auth = await member_with_token(database, "agent", "Ada Agent")
    api = await client.post(
        "/api/v1/canned-responses",
        json={"shortcut": "Not valid!", "title": "x", "text": "y"},
        headers=auth,
    )
    assert api.status_code == 422
    assert api.json()["error"].startswith("shortcut: 1-64 lower-case letters")


async def test_the_customer_timeline_and_interventions_are_russian(
    client: httpx.AsyncClient, database: Database
) -> None:
    olga = await _member(database, "Olga Ivanova", "agent", ui_language="ru")
    await make_programs(database)
    batch = [
        ev("purchase", "p", at=days_ago(20), program="mind-1", amount="99"),
        ev("milestone_reported", "ms", at=days_ago(1), milestone="first month"),
    ]
    for e in batch:
        e["customer"].update({"name": "Ana Silva", "timezone": "America/Sao_Paulo"})
    await ingest(database, batch)
    (ana,) = await rows(database, Customer, Customer.search_name.startswith("ana"))  # type: ignore[attr-defined]
    signed_in(client, olga)

    page = _page(await client.get(f"/customers/{ana.id}", headers=HTML))
    assert "сообщил о достижении" in page  # the event's summary
    assert "достиг цели: first month" in page  # the intervention's reason
    assert "milestone reported" not in page and "reached a milestone" not in page

    # A refusal on the error page: the intervention was marked done already (another tab).
    (intervention,) = await rows(database, Intervention, Intervention.customer_id == ana.id)  # type: ignore[arg-type]
    h = {"X-CSRF-Token": signed_in(client, olga), **HTML}
    action = f"/customers/{ana.id}/interventions/{intervention.id}/done"
    assert (await client.post(action, headers=h)).status_code == 303
    again = await client.post(action, headers=h)
    assert again.status_code == 409
    assert f"вмешательство {intervention.id} уже: выполнено" in html.unescape(again.text)
    missing = await client.post(f"/customers/{ana.id}/interventions/999999/done", headers=h)
    assert missing.status_code == 404
    assert "вмешательства 999999 не существует" in html.unescape(missing.text)

    _, auth = await member_with_token(database, "agent", "Ada Agent")
    api = (await client.get(f"/api/v1/customers/{ana.id}/timeline", headers=auth)).json()
    summaries = [e["summary"] for e in api["entries"]]
    assert any(s.startswith("milestone reported") for s in summaries), summaries
    assert "reached a milestone: first month" in summaries
