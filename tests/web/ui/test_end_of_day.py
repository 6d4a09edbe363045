"""The web app's "End my day" (PRODUCT.md's global handoff, issue #16): the page lists the
member's open conversations with whom each would go to now and the context package, for
people; one button hands them all over as a shift end does (the receiver's notice job,
kind ``shift_end``); the member's "mine" is empty after it. An agent ends only their own
day; a lead may end another member's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from handoff.bus import HandoffCreated
from handoff.models import Handoff
from heliograph.db import Database
from inbox.models import Conversation, Message
from surfaces.telegram_send import handoff_text
from tests.utils.db import rows
from tests.utils.factories import make_member, receive
from tests.utils.routing_world import every_day, give, team
from tests.utils.web import signed_in

HTML = {"Accept": "text/html"}


def _created(h: Handoff) -> HandoffCreated:
    return HandoffCreated(
        handoff_id=h.id,  # type: ignore[arg-type]
        conversation_id=h.conversation_id,
        from_member_id=h.from_member_id,
        to_member_id=h.to_member_id,
        kind=h.kind,
        reason=h.reason,
    )


def _off_shift_now() -> dict[str, list[list[str]]]:
    """An hour a day, twelve hours from now (UTC): off shift now."""
    hour = (datetime.now(UTC) + timedelta(hours=12)).hour
    return every_day([f"{hour:02d}:00", f"{hour:02d}:59"])


async def _world(database: Database) -> tuple[dict[str, int], list[int]]:
    """Maya (Kuala Lumpur) holds two conversations; Oliver (New York) is on shift; Sam is
    not on shift now."""
    ids = await team(
        database,
        {"name": "Maya Tan", "timezone": "Asia/Kuala_Lumpur", "role": "agent"},
        {"name": "Oliver Bennett", "timezone": "America/New_York", "role": "agent"},
        {"name": "Sam Reed", "timezone": "UTC", "hours": _off_shift_now(), "role": "agent"},
    )
    first = await receive(database, "eod-1", "ana", text="What comes next?", name="Ana Silva")
    second = await receive(database, "eod-2", "ken", text="Où est ma lampe ?")
    async with database.session() as session:
        await session.execute(
            update(Message)
            .where(Message.id == second.message_id)  # type: ignore[arg-type]
            .values(
                text="Where is my lamp?",
                original_text="Où est ma lampe ?",
                original_language="fr",
                translation_status="done",
            )
        )
        await session.commit()
    now = datetime.now(UTC)
    for result in (first, second):
        await give(database, result.conversation_id, ids["Maya"], now)
    return ids, [first.conversation_id, second.conversation_id]


async def test_end_my_day_hands_everything_to_the_proposed_person(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids, cids = await _world(database)
    csrf = signed_in(client, ids["Maya"])

    inbox = await client.get("/", headers=HTML)
    assert 'href="/end-of-day"' in inbox.text
    page = await client.get("/end-of-day", headers=HTML)
    assert page.status_code == 200
    # Each conversation, with Oliver proposed (on shift now; Sam is not, Maya is leaving).
    for cid in cids:
        assert f'data-conversation="{cid}"' in page.text
    assert page.text.count(f'data-proposal="{ids["Oliver"]}"') == 2
    assert "Proposed: Oliver Bennett — New York" in page.text
    # The context package for people, not JSON: the customer, their words, the original.
    assert "Ana Silva" in page.text and "What comes next?" in page.text
    assert "Where is my lamp?" in page.text and "Original: Où est ma lampe ?" in page.text
    assert '"messages"' not in page.text and "{&#34;" not in page.text
    assert "Hand off 2 conversations" in page.text

    # Without the form's token nothing happens.
    refused = await client.post("/end-of-day", headers=HTML)
    assert refused.status_code == 403
    assert len(await rows(database, Handoff)) == 0

    done = await client.post("/end-of-day", data={"csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/end-of-day?handed=2"
    after = await client.get(done.headers["location"], headers=HTML)
    assert "Handed off 2 conversations." in after.text
    assert "No open conversations" in after.text

    # Maya's "mine" is empty; Oliver has both, each with a shift-end handoff and its notice.
    mine = await client.get("/inbox/rows?view=mine", headers=HTML)
    assert all(f"conv-{cid}" not in mine.text for cid in cids)
    held = await rows(database, Conversation, Conversation.id.in_(cids))  # type: ignore[attr-defined]
    assert {c.assignee_id for c in held} == {ids["Oliver"]}
    handoffs = await rows(database, Handoff)
    assert sorted(h.conversation_id for h in handoffs) == sorted(cids)
    assert {(h.kind, h.from_member_id, h.to_member_id) for h in handoffs} == {
        ("shift_end", ids["Maya"], ids["Oliver"])
    }
    # What Oliver's notice says (on Telegram: the browser flow in test_flows.py sends it).
    notice = handoff_text(_created(handoffs[0]), handoffs[0].context, "Maya Tan", "UTC")
    assert f"#{handoffs[0].conversation_id} from Maya Tan" in notice and "Ana Silva" in notice

    # Oliver's conversation page shows the stored package, rendered, in the thread.
    signed_in(client, ids["Oliver"])
    thread = (await client.get(f"/conversations/{cids[1]}/thread", headers=HTML)).text
    assert "Handed off to Oliver Bennett" in thread
    assert re.search(r'class="package"', thread) and "Original: Où est ma lampe ?" in thread


async def test_nobody_on_shift_sends_them_back_to_the_queue(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids = await team(
        database,
        {"name": "Maya Tan", "timezone": "Asia/Kuala_Lumpur", "role": "agent"},
        {"name": "Sam Reed", "timezone": "UTC", "hours": _off_shift_now(), "role": "agent"},
    )
    cid = (await receive(database, "eod-q", "ana", text="Hello?")).conversation_id
    await give(database, cid, ids["Maya"], datetime.now(UTC))
    csrf = signed_in(client, ids["Maya"])
    page = await client.get("/end-of-day", headers=HTML)
    assert 'data-proposal=""' in page.text and "back to the queue" in page.text
    assert "Hand off 1 conversation<" in page.text
    done = await client.post("/end-of-day", data={"csrf_token": csrf})
    assert done.headers["location"] == "/end-of-day?handed=1"
    (c,) = await rows(database, Conversation, Conversation.id == cid)
    assert c.assignee_id is None
    (h,) = await rows(database, Handoff)
    assert h.to_member_id is None and "back to the queue" in h.reason


async def test_an_agent_ends_only_their_own_day_a_lead_another_s(
    client: httpx.AsyncClient, database: Database
) -> None:
    ids, cids = await _world(database)
    async with database.session() as session:
        lead = (await make_member(session, "Lena Lead", "lead")).id
        await session.commit()

    csrf = signed_in(client, ids["Oliver"])
    other = await client.get(f"/end-of-day?member_id={ids['Maya']}", headers=HTML)
    assert other.status_code == 403 and "Only a lead ends another member" in other.text
    posted = await client.post(
        "/end-of-day", data={"csrf_token": csrf, "member_id": str(ids["Maya"])}, headers=HTML
    )
    assert posted.status_code == 403
    bad = await client.get("/end-of-day?member_id=abc", headers=HTML)
    assert bad.status_code == 422
    assert len(await rows(database, Handoff)) == 0

    csrf = signed_in(client, lead)  # type: ignore[arg-type]
    assert (await client.get("/end-of-day?member_id=999999", headers=HTML)).status_code == 404
    page = await client.get(f"/end-of-day?member_id={ids['Maya']}", headers=HTML)
    assert page.status_code == 200 and "End Maya Tan" in page.text
    assert "Hand off 2 conversations" in page.text
    done = await client.post(
        "/end-of-day", data={"csrf_token": csrf, "member_id": str(ids["Maya"])}
    )
    assert done.headers["location"] == f"/end-of-day?member_id={ids['Maya']}&handed=2"
    held = await rows(database, Conversation, Conversation.id.in_(cids))  # type: ignore[attr-defined]
    assert {c.assignee_id for c in held} == {ids["Oliver"]}
