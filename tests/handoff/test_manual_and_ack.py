"""Manual handoffs, acknowledgement, escalation, and the REST surface."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from handoff.bus import HANDOFF_ESCALATED, HandoffEscalated
from handoff.service import acknowledge, escalate_unacknowledged, handoff_manual, shift_end_pass
from heliograph import jobs
from heliograph.db import Database
from heliograph.models import Job
from inbox.conversations import set_status
from routing import snapshot
from routing.models import TeamMember
from tests.utils.factories import member_with_token
from tests.utils.handoff_world import AFTER, AIKO, BEFORE, OLIVER, SAM, conversation_of, handoffs
from tests.utils.jobs import listening
from tests.utils.routing_world import (
    ALWAYS,
    assignments,
    conversation,
    customer_writes,
    route,
    team,
)

ESCALATED = jobs.JobKind("test.handoff_escalated", HandoffEscalated)


async def _member(database: Database, member_id: int) -> TeamMember:
    async with database.read_session() as session:
        return await session.get(TeamMember, member_id)  # type: ignore[return-value]


async def test_manual_handoff_to_a_person_and_to_next(sqlite_database: Database) -> None:
    ids = await team(sqlite_database, AIKO, OLIVER, SAM)
    aiko = await _member(sqlite_database, ids["Aiko"])
    first = await conversation_of(sqlite_database, ids["Aiko"], 1)
    second = await conversation_of(sqlite_database, ids["Aiko"], 2)
    async with sqlite_database.session() as session:
        to_sam = await handoff_manual(
            session, first, aiko, to_member_id=ids["Sam"], note="promised a refund", now=BEFORE
        )
        # 08:30 UTC: nobody else is on shift; Oliver and Sam both start at 09:00.
        to_next = await handoff_manual(session, second, aiko, now=BEFORE)
        await session.commit()
    assert (to_sam.kind, to_sam.to_member_id) == ("manual", ids["Sam"])
    assert "(off shift)" in to_sam.reason
    assert to_sam.context["handoff_note"] == "promised a refund"
    assert any(n["text"] == "promised a refund" for n in to_sam.context["notes"])
    assert to_next.to_member_id in (ids["Oliver"], ids["Sam"])
    assert "next on shift" in to_next.reason
    for conversation_id, receiver in ((first, to_sam), (second, to_next)):
        assert (await conversation(sqlite_database, conversation_id)).assignee_id == (
            receiver.to_member_id
        )
        last = (await assignments(sqlite_database, conversation_id))[-1]
        assert (last.kind, last.by_member_id) == ("handoff", ids["Aiko"])


async def test_agent_may_not_hand_over_someone_elses(sqlite_database: Database) -> None:
    ids = await team(sqlite_database, AIKO, OLIVER)
    oliver = await _member(sqlite_database, ids["Oliver"])
    conversation_id = await conversation_of(sqlite_database, ids["Aiko"])
    async with sqlite_database.session() as session:
        with pytest.raises(ValueError, match="only their own"):
            await handoff_manual(session, conversation_id, oliver, now=AFTER)


@pytest.fixture
def escalations() -> Iterator[None]:
    with listening(HANDOFF_ESCALATED, ESCALATED, alone=True):
        yield


async def _escalated_events(database: Database) -> list[dict[str, object]]:
    async with database.read_session() as session:
        rows = await session.execute(select(Job).where(Job.kind == ESCALATED.name))
        return [job.payload for job in rows.scalars().all()]


async def test_ack_stops_escalation(sqlite_database: Database, escalations: None) -> None:
    ids = await team(sqlite_database, AIKO, OLIVER, SAM)
    conversation_id = await conversation_of(sqlite_database, ids["Aiko"])
    async with sqlite_database.session() as session:
        await shift_end_pass(session, AFTER)
        await session.commit()
    [row] = await handoffs(sqlite_database, conversation_id)
    receiver = await _member(sqlite_database, row.to_member_id)  # type: ignore[arg-type]
    async with sqlite_database.session() as session:
        acked = await acknowledge(session, row.id, receiver, AFTER + timedelta(minutes=3))  # type: ignore[arg-type]
        await session.commit()
    assert acked.state == "acknowledged"
    async with sqlite_database.session() as session:
        assert await escalate_unacknowledged(session, AFTER + timedelta(minutes=30)) == 0
        await session.commit()
    assert len(await handoffs(sqlite_database, conversation_id)) == 1
    assert (await conversation(sqlite_database, conversation_id)).assignee_id == receiver.id
    assert await _escalated_events(sqlite_database) == []


async def test_no_ack_reroutes_once_then_alerts(
    sqlite_database: Database, escalations: None
) -> None:
    ids = await team(sqlite_database, AIKO, OLIVER, SAM)
    conversation_id = await conversation_of(sqlite_database, ids["Aiko"])
    async with sqlite_database.session() as session:
        await shift_end_pass(session, AFTER)
        await session.commit()
    async with sqlite_database.session() as session:  # 5 minutes: still within the window
        assert await escalate_unacknowledged(session, AFTER + timedelta(minutes=5)) == 0
        assert await escalate_unacknowledged(session, AFTER + timedelta(minutes=11)) == 1
        await session.commit()
    first, second = await handoffs(sqlite_database, conversation_id)
    assert first.state == "escalated" and first.escalated_at is not None
    assert second.kind == "escalation" and second.from_member_id == first.to_member_id
    assert {first.to_member_id, second.to_member_id} == {ids["Oliver"], ids["Sam"]}
    assert second.reason.startswith("handoff escalated (")
    assert (await conversation(sqlite_database, conversation_id)).assignee_id == (
        second.to_member_id
    )
    assert await _escalated_events(sqlite_database) == []
    async with sqlite_database.session() as session:
        assert await escalate_unacknowledged(session, AFTER + timedelta(minutes=22)) == 1
        await session.commit()
    [event] = await _escalated_events(sqlite_database)
    assert event["handoff_id"] == second.id and event["member_id"] == second.to_member_id
    assert len(await handoffs(sqlite_database, conversation_id)) == 2  # re-routed only once
    async with sqlite_database.session() as session:
        assert await escalate_unacknowledged(session, AFTER + timedelta(minutes=60)) == 0


async def test_reopened_conversation_goes_to_whoever_is_on_shift(
    sqlite_database: Database,
) -> None:
    ids = await team(sqlite_database, AIKO, OLIVER)
    conversation_id = await conversation_of(sqlite_database, ids["Aiko"], with_reply=False)
    async with sqlite_database.session() as session:
        await set_status(session, conversation_id, "resolved", None)
        await session.commit()
    again = await customer_writes(sqlite_database, "again", "cust-1", "one more thing")
    assert again.conversation_id == conversation_id  # a recent one is reopened
    # The inbox's event for it carries reopened=True; Aiko's shift is over at AFTER.
    routed = await route(sqlite_database, again, AFTER, reopened=True)
    assert routed is not None and routed.member_id == ids["Oliver"]
    assert (await conversation(sqlite_database, again.conversation_id)).assignee_id == ids["Oliver"]


async def test_rest_handoff_ack_and_history(client: httpx.AsyncClient, database: Database) -> None:
    ada, ada_h = await member_with_token(database, name="Ada Agent")
    bob, bob_h = await member_with_token(database, name="Bob Builder")
    async with database.session() as session:
        await session.execute(
            update(TeamMember).where(TeamMember.id == bob.id).values(weekly_hours=ALWAYS)
        )
        await session.commit()
    snapshot.recheck()
    conversation_id = await conversation_of(database, ada.id)  # type: ignore[arg-type]

    url = f"/api/v1/conversations/{conversation_id}/handoff"
    response = await client.post(url, json={"note": "call back tomorrow"}, headers=bob_h)
    assert response.status_code == 409  # not Bob's conversation
    response = await client.post(url, json={"note": "call back tomorrow"}, headers=ada_h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["kind"], body["to_member_id"], body["state"]) == ("manual", bob.id, "pending")
    assert body["context"]["handoff_note"] == "call back tomorrow"

    pending = await client.get("/api/v1/handoffs", params={"state": "pending"}, headers=ada_h)
    assert [h["id"] for h in pending.json()] == [body["id"]]
    ack = f"/api/v1/handoffs/{body['id']}/ack"
    assert (await client.post(ack, headers=ada_h)).status_code == 409  # not the receiver
    assert (await client.post("/api/v1/handoffs/999999/ack", headers=bob_h)).status_code == 404
    acked = await client.post(ack, headers=bob_h)
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"

    history = await client.get(f"/api/v1/conversations/{conversation_id}/handoffs", headers=ada_h)
    [entry] = history.json()
    assert entry["acknowledged_at"] is not None and entry["ack_s"] >= 0
    pending = await client.get("/api/v1/handoffs", params={"state": "pending"}, headers=ada_h)
    assert pending.json() == []
