"""Canned responses (issue #16): the service (CRUD, permissions, search) and placeholders."""

from __future__ import annotations

import pytest

from heliograph.db import Database
from inbox import canned
from inbox.conversations import InvalidRequest
from tests.utils.factories import make_member, receive


def test_fill_placeholders_and_unknown() -> None:
    customer = canned.CustomerView(name="Maria Silva", email="maria@example.com")
    agent = type("A", (), {"name": "Ada Lovelace"})()
    text = (
        "Hi {{customer.first_name}} ({{ customer.name }}, {{customer.email}}), "
        "{{agent.first_name}} / {{agent.name}} here. {{customer.shoe_size}}"
    )
    filled = canned.fill_report(text, customer, agent)
    assert filled.text == (
        "Hi Maria (Maria Silva, maria@example.com), Ada / Ada Lovelace here. {{customer.shoe_size}}"
    )
    assert filled.unknown == ["customer.shoe_size"]
    assert canned.fill(text, customer, agent) == filled.text
    # Missing values never crash: empty strings.
    assert canned.fill("Hi {{customer.first_name}}!", None, None) == "Hi !"
    assert canned.fill("{{customer.name}}", {"display_name": "Bo"}, None) == "Bo"


async def test_crud_permissions_and_search(database: Database) -> None:
    async with database.session() as session:
        agent = await make_member(session, "Ada Agent", "agent")
        other = await make_member(session, "Ben Other", "agent")
        lead = await make_member(session, "Lia Lead", "lead")
        await session.commit()

        with pytest.raises(canned.CannedForbidden):
            await canned.create(session, agent, shortcut="refund", title="R", text="x", team=True)
        team = await canned.create(
            session,
            lead,
            shortcut="/Refund",
            title="Refund policy",
            text="Hi {{customer.first_name}}, refunds take 5 days. {{agent.name}}",
            team=True,
        )
        assert team.shortcut == "refund" and team.owner_member_id is None
        team_pt = await canned.create(
            session,
            lead,
            shortcut="refund-pt",
            title="Reembolso",
            text="Olá",
            language="pt",
            team=True,
        )
        mine = await canned.create(
            session, agent, shortcut="thanks", title="Thanks", text="Thank you!"
        )
        assert mine.owner_member_id == agent.id and mine.created_by == agent.id
        # The same shortcut may exist per owner scope, not twice in one.
        await canned.create(session, other, shortcut="thanks", title="Thx", text="Thx")
        with pytest.raises(InvalidRequest, match="already used"):
            await canned.create(session, agent, shortcut="thanks", title="T", text="t")
        with pytest.raises(InvalidRequest, match="already used"):
            await canned.create(session, lead, shortcut="refund", title="T", text="t", team=True)
        with pytest.raises(InvalidRequest, match="shortcut"):
            await canned.create(session, agent, shortcut="bad shortcut!", title="T", text="t")
        with pytest.raises(InvalidRequest, match="text"):
            await canned.create(session, agent, shortcut="empty", title="T", text="  ")
        await session.commit()

        # Visibility: team + own, never another member's personal one.
        assert [r.shortcut for r in await canned.list_for(session, agent)] == [
            "refund",
            "refund-pt",
            "thanks",
        ]
        with pytest.raises(canned.CannedNotFound):
            await canned.get(session, agent, (await canned.list_for(session, other))[-1].id)

        # Agents cannot change the team's; leads can; owners change their own.
        with pytest.raises(canned.CannedForbidden):
            await canned.update(session, agent, team.id, title="Mine now")
        with pytest.raises(canned.CannedForbidden):
            await canned.delete(session, agent, team.id)
        await canned.update(session, lead, team.id, title="Refunds")
        await canned.update(
            session, agent, mine.id, text="Thanks a lot!", language="en", set_language=True
        )
        await session.commit()
        assert (await canned.get(session, agent, mine.id)).language == "en"

        # Search: shortcut before title before text, the conversation's language first.
        found = await canned.search(session, agent, "refund", language="pt")
        assert [r.shortcut for r in found] == ["refund", "refund-pt"]
        found = await canned.search(session, agent, "reemb")
        assert [r.shortcut for r in found] == ["refund-pt"]
        found = await canned.search(session, agent, "5 days")
        assert [r.id for r in found] == [team.id]
        assert len(await canned.search(session, agent, "", limit=2)) == 2
        assert team_pt.id in [r.id for r in await canned.search(session, lead, "", language="pt")]

        await canned.delete(session, agent, mine.id)
        await canned.delete(session, lead, team_pt.id)
        await session.commit()
        assert [r.shortcut for r in await canned.list_for(session, agent)] == ["refund"]


async def test_filled_for_a_conversation(database: Database) -> None:
    result = await receive(database, "m-1", "cust-1", name="Maria Silva", email="maria@example.com")
    async with database.session() as session:
        lead = await make_member(session, "Lia Lead", "lead")
        await canned.create(
            session,
            lead,
            shortcut="refund",
            title="Refund",
            text="Hi {{customer.first_name}} <{{customer.email}}>, {{agent.first_name}}. {{x.y}}",
            team=True,
        )
        await session.commit()
        filled = await canned.filled_for(session, lead, result.conversation_id, "/refund")
        assert filled.text == "Hi Maria <maria@example.com>, Lia. {{x.y}}"
        assert filled.unknown == ["x.y"]
        with pytest.raises(canned.CannedNotFound):
            await canned.filled_for(session, lead, result.conversation_id, "nope")
