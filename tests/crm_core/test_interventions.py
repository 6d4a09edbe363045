"""Intervention triggers: each fires once per cause, reaches its owner, and sends only when
consent and the customer's quiet hours allow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, event, update

from crm_core import interventions
from crm_core.bus import (
    INTERVENTION_OPENED,
    SEND_INTERVENTION,
    InterventionOpened,
    InterventionRef,
)
from crm_core.models import Customer, Identity, Intervention
from crm_core.profile import update_profile
from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.models import Job
from inbox.interventions import send_intervention
from inbox.models import Conversation, Message
from tests.utils.crm_world import days_ago, ev, evaluate, ingest, make_programs
from tests.utils.db import count, rows
from tests.utils.factories import make_member, receive
from tests.utils.jobs import listening

SURFACE = jobs.JobKind("test.surface", InterventionOpened)


def by_rule(found: list[Intervention]) -> dict[str, list[Intervention]]:
    grouped: dict[str, list[Intervention]] = {}
    for i in found:
        grouped.setdefault(i.rule, []).append(i)
    return grouped


def lessons(prefix: str, days: list[float], who: str = "ana@example.com") -> list[dict[str, Any]]:
    return [
        ev("lesson_completed", f"{prefix}{d}", who, at=days_ago(d), program="mind-1") for d in days
    ]


@pytest.fixture
def surface() -> Iterator[None]:
    with listening(INTERVENTION_OPENED, SURFACE, alone=True):
        yield


async def sending(database: Database, *rules: str) -> None:
    """An admin turns these rules from "suggest to the agent" (the default) to "send"."""
    async with database.session() as session:
        for rule in rules:
            await interventions.set_rule(session, rule, "member:1", auto_send=True)
        await session.commit()


def bought(key: str, who: str = "ana@example.com", days: float = 40) -> dict[str, Any]:
    return ev("purchase", key, who, at=days_ago(days), program="mind-1", amount="99")


# --- each rule: fires, and fires once ----------------------------------------------------------


async def test_a_week_without_course_activity_gets_one_gentle_nudge(database: Database) -> None:
    await make_programs(database)
    first = await ingest(database, [bought("p"), *lessons("l", [12, 10])])
    assert first.interventions == 0  # an absence of activity is the scheduler's to see
    assert (await evaluate(database)).by_rule == {"inactivity_nudge": 1}
    (nudge,) = by_rule(await rows(database, Intervention))["inactivity_nudge"]
    assert nudge.reason.startswith("no course activity for 10 days")
    assert "we've missed you in Mindful Mornings" in nudge.suggested_message
    assert not nudge.auto_send and nudge.send_status is None  # a suggestion by default
    assert await count(database, Job, Job.kind == SEND_INTERVENTION.name) == 0

    assert (await evaluate(database)).by_rule.get("inactivity_nudge") is None  # not twice
    await ingest(database, lessons("back", [0]))  # they came back...
    assert (await evaluate(database, now=utcnow() + timedelta(days=3))).created == 0
    await sending(database, "inactivity_nudge")  # an admin lets it send on its own
    later = await evaluate(database, now=utcnow() + timedelta(days=8))  # ...and left again
    assert later.by_rule == {"inactivity_nudge": 1}
    first_nudge, second_nudge = by_rule(await rows(database, Intervention))["inactivity_nudge"]
    assert (first_nudge.send_status, second_nudge.send_status) == (None, "scheduled")
    assert await count(database, Job, Job.kind == SEND_INTERVENTION.name) == 1


async def test_every_rule_only_suggests_until_an_admin_turns_it_to_send(
    database: Database,
) -> None:
    async with database.read_session() as session:
        rules = await interventions.load_rules(session)
    assert {name: r.auto_send for name, r in rules.items()} == dict.fromkeys(rules, False)
    await make_programs(database)
    await ingest(database, [ev("milestone_reported", "ms", milestone="first month")])
    (found,) = await rows(database, Intervention)
    assert (found.auto_send, found.send_status, found.send_after) == (False, None, None)
    assert await count(database, Job, Job.kind == SEND_INTERVENTION.name) == 0


async def test_no_nudge_without_an_active_enrollment_or_after_a_month(
    sqlite_database: Database,
) -> None:
    await make_programs(sqlite_database)
    refunded = ev("refund", "r", at=days_ago(9), program="mind-1", amount="0")
    await ingest(sqlite_database, [*lessons("l", [10]), refunded])  # a trial, cancelled
    await ingest(
        sqlite_database, [bought("p2", "bo@example.com"), *lessons("m", [45], "bo@example.com")]
    )
    await evaluate(sqlite_database)
    assert "inactivity_nudge" not in by_rule(await rows(sqlite_database, Intervention))


async def test_a_buyer_who_never_started_is_nudged_but_not_rescued_too_soon(
    sqlite_database: Database,
) -> None:
    await make_programs(sqlite_database)
    await ingest(sqlite_database, [bought("p1", "new@example.com", days=10)])
    await ingest(sqlite_database, [bought("p2", "older@example.com", days=20)])
    await ingest(sqlite_database, [bought("p3", "today@example.com", days=0.1)])
    await evaluate(sqlite_database)
    fired = {(i.customer_id, i.rule): i for i in await rows(sqlite_database, Intervention)}
    assert sorted(fired) == [
        (1, "inactivity_nudge"),
        (2, "inactivity_nudge"),
        (2, "low_engagement"),
    ]
    assert fired[(1, "inactivity_nudge")].reason == "enrolled over 7 days ago and not started yet"


async def test_low_engagement_gets_personal_outreach_once(database: Database) -> None:
    await make_programs(database)
    await ingest(database, [bought("p", days=25), *lessons("l", [20])])
    assert "low_engagement" in (await evaluate(database)).by_rule
    (outreach,) = by_rule(await rows(database, Intervention))["low_engagement"]
    assert outreach.reason == "engagement score 21 is below 25"
    assert not outreach.auto_send and outreach.send_status is None  # for an agent to send
    assert "check in personally" in outreach.suggested_message
    assert (await evaluate(database)).created == 0
    # A new low spell inside the cooldown stays quiet.
    await ingest(database, lessons("x", [35]))  # a new cause (a later event), still low
    assert "low_engagement" not in (await evaluate(database)).by_rule


async def test_high_engagement_and_a_completion_suggest_the_next_program(
    database: Database,
) -> None:
    programs = await make_programs(database)
    done = ev("course_progress", "done", program="mind-1", progress=100)
    await ingest(database, [bought("p"), *lessons("l", [1, 2, 3, 4, 5, 6]), done])
    (upsell,) = by_rule(await rows(database, Intervention))["upsell"]
    assert upsell.suggested_program_id == programs["mind-2"].id
    assert "continue with Mindful Mastery" in upsell.suggested_message
    assert "Congratulations on completing Mindful Mornings" in upsell.suggested_message
    assert (await evaluate(database)).created == 0


async def test_no_upsell_when_engagement_is_low_or_nothing_is_left_to_suggest(
    sqlite_database: Database,
) -> None:
    await make_programs(sqlite_database)
    done = ev("course_progress", "done", program="mind-1", progress=100)
    await ingest(sqlite_database, [bought("p"), done])  # engagement 54: not enough
    own = ev("purchase", "p2", "bo@example.com", program="mind-2", amount="249")
    done_bo = ev("course_progress", "d2", "bo@example.com", program="mind-1", progress=100)
    await ingest(
        sqlite_database, [own, *lessons("l", [1, 2, 3, 4, 5, 6], "bo@example.com"), done_bo]
    )
    assert "upsell" not in by_rule(await rows(sqlite_database, Intervention))


async def test_a_milestone_is_celebrated_once(database: Database) -> None:
    await make_programs(database)
    result = await ingest(
        database, [ev("milestone_reported", "ms", program="mind-1", milestone="30 days in a row")]
    )
    assert result.interventions == 1
    (party,) = by_rule(await rows(database, Intervention))["milestone_celebration"]
    assert party.cause_key.startswith("event:")
    assert "Congratulations on reaching 30 days in a row" in party.suggested_message
    assert (await evaluate(database)).created == 0
    old = await ingest(
        database, [ev("milestone_reported", "old", at=days_ago(8), milestone="first week")]
    )
    assert old.interventions == 0  # too long ago to celebrate now


async def test_repeated_support_issues_get_proactive_outreach_once(database: Database) -> None:
    await make_programs(database)
    tickets = [ev("support_ticket", f"t{n}", at=days_ago(n), ticket_id=f"T{n}") for n in (9, 5)]
    assert (await ingest(database, tickets)).interventions == 0  # two is not a pattern
    third = await ingest(database, [ev("support_ticket", "t3", ticket_id="T3")])
    assert third.interventions == 1
    (outreach,) = by_rule(await rows(database, Intervention))["support_outreach"]
    assert outreach.reason == "3 support tickets in 30 days"
    fourth = await ingest(database, [ev("support_ticket", "t4", ticket_id="T4")])
    assert fourth.interventions == 0  # cooling down
    assert len(await rows(database, Intervention)) == 1


async def test_two_passes_racing_still_make_one_intervention(pg_database: Database) -> None:
    import asyncio

    await make_programs(pg_database)
    await ingest(pg_database, [ev("milestone_reported", "ms", milestone="a year")])
    async with pg_database.session() as session:
        await session.execute(update(Intervention).values(cause_key="x"))  # forget it fired
        await session.commit()
    results = await asyncio.gather(*(evaluate(pg_database) for _ in range(4)))
    assert sum(r.created for r in results) == 1
    assert await count(pg_database, Intervention) == 2


async def test_the_pass_is_set_based(sqlite_database: Database) -> None:
    """The statements a pass runs do not grow with the number of customers."""
    await make_programs(sqlite_database)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    async def pass_over(customers: int, key: str) -> int:
        batch = [
            ev("milestone_reported", f"{key}{n}", f"c{key}{n}@example.com", milestone="m")
            for n in range(customers)
        ]
        async with sqlite_database.session() as session:
            await session.execute(update(Customer).values(erased_at=utcnow()))  # earlier ones out
            await session.commit()
        await ingest(sqlite_database, batch)
        async with sqlite_database.session() as session:  # forget what the event path fired
            await session.execute(delete(Intervention))
            await session.execute(delete(Job))
            await session.commit()
        statements.clear()
        event.listen(sqlite_database.engine.sync_engine, "before_cursor_execute", seen)
        try:
            result = await evaluate(sqlite_database)
        finally:
            event.remove(sqlite_database.engine.sync_engine, "before_cursor_execute", seen)
        assert result.created == customers
        return len(statements)

    assert await pass_over(5, "a") == await pass_over(60, "b")


# --- who it reaches ------------------------------------------------------------------------


async def test_it_is_published_for_the_chat_surfaces_with_its_owner(
    database: Database, surface: None
) -> None:
    await make_programs(database)
    await sending(database, "milestone_celebration")
    conv = await receive(database, "m1", "cust-1", email="ana@example.com", name="Ana Silva")
    async with database.session() as session:
        agent = await make_member(session, "Olga Owner")
        await session.execute(
            update(Conversation)
            .where(Conversation.id == conv.conversation_id)
            .values(assignee_id=agent.id)
        )
        await session.commit()
    await ingest(database, [ev("milestone_reported", "ms", milestone="first month")])
    (job,) = [j for j in await rows(database, Job) if j.kind == "test.surface"]
    payload = job.payload
    assert payload["owner_id"] == agent.id
    assert (payload["customer_id"], payload["customer_name"]) == (conv.customer_id, "Ana Silva")
    assert payload["rule"] == "milestone_celebration" and payload["auto_send"] is True
    assert payload["suggested_message"].startswith(
        "Hi Ana! Congratulations on reaching first month"
    )
    (found,) = await rows(database, Intervention)
    assert found.owner_id == agent.id


# --- sending: quiet hours and consent --------------------------------------------------------


async def test_automatic_messages_wait_for_the_end_of_quiet_hours(database: Database) -> None:
    await make_programs(database)
    await sending(database, "milestone_celebration")
    night = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)  # 23:30 in Tokyo
    tokyo = {"email": "kenji@example.com", "name": "Kenji Sato", "timezone": "Asia/Tokyo"}
    milestone = {"type": "milestone_reported", "milestone": "first retreat", "customer": tokyo}
    await ingest(database, [{**milestone, "idempotency_key": "n1"}], now=night)
    (found,) = await rows(database, Intervention)
    assert found.send_after == datetime(2026, 6, 15, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo
    (job,) = [j for j in await rows(database, Job) if j.kind == SEND_INTERVENTION.name]
    assert job.run_at == found.send_after and job.payload == {"intervention_id": found.id}

    noon = datetime(2026, 6, 16, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo: no waiting
    await ingest(database, [{**milestone, "idempotency_key": "n2"}], now=noon)
    second = (await rows(database, Intervention))[-1]
    assert second.send_after == noon


async def customer_with_milestone(database: Database, **profile: Any) -> tuple[int, int]:
    await make_programs(database)
    await sending(database, "milestone_celebration")
    conv = await receive(database, "m1", "cust-1", email="ana@example.com", name="Ana Silva")
    local = utcnow().astimezone(ZoneInfo("America/New_York"))
    hours = {
        "quiet_hours_start": local.strftime("%H:%M"),
        "quiet_hours_end": local.strftime("%H:%M"),
    }
    async with database.session() as session:  # no quiet hours unless the test sets some
        await update_profile(
            session, conv.customer_id, {"timezone": "America/New_York", **hours, **profile}
        )
        await session.commit()
    await ingest(database, [ev("milestone_reported", "ms", milestone="first month")])
    (found,) = await rows(database, Intervention)
    return conv.customer_id, found.id  # type: ignore[return-value]


async def test_a_message_goes_out_on_the_customers_channel(database: Database) -> None:
    _, intervention_id = await customer_with_milestone(database)
    await send_intervention(InterventionRef(intervention_id=intervention_id))
    (found,) = await rows(database, Intervention)
    assert (found.state, found.send_status, found.resolved_by) == ("done", "sent", "auto")
    sent = await rows(database, Message, Message.direction == "out")
    assert [(m.author_type, m.channel, m.id) for m in sent] == [
        ("system", "api", found.sent_message_id)
    ]
    assert sent[0].text.startswith("Hi Ana! Congratulations")
    assert any(j.kind == "outbox.deliver" for j in await rows(database, Job))
    await send_intervention(InterventionRef(intervention_id=intervention_id))  # a replayed job
    assert await count(database, Message, Message.direction == "out") == 1


async def test_nothing_is_sent_inside_quiet_hours(sqlite_database: Database) -> None:
    local = utcnow().astimezone(ZoneInfo("America/New_York"))
    quiet = {
        "quiet_hours_start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "quiet_hours_end": (local + timedelta(hours=1)).strftime("%H:%M"),
    }
    _, intervention_id = await customer_with_milestone(sqlite_database, **quiet)
    (found,) = await rows(sqlite_database, Intervention)
    assert found.send_after is not None and found.send_after > utcnow() + timedelta(minutes=50)
    with pytest.raises(jobs.Defer) as deferred:
        await send_intervention(InterventionRef(intervention_id=intervention_id))
    assert 50 * 60 < deferred.value.delay_s <= 61 * 60
    assert await count(sqlite_database, Message, Message.direction == "out") == 0


async def test_nothing_is_sent_to_an_opted_out_channel(database: Database) -> None:
    _, intervention_id = await customer_with_milestone(database, preferred_channel="api")
    async with database.session() as session:
        await session.execute(update(Identity).values(opted_out=True))
        await session.commit()
    await send_intervention(InterventionRef(intervention_id=intervention_id))
    (found,) = await rows(database, Intervention)
    assert (found.state, found.send_status) == ("open", "skipped")  # an agent still sees it
    assert found.send_note == "opted out of api, the preferred channel"
    assert await count(database, Message, Message.direction == "out") == 0


async def test_a_dismissed_intervention_is_not_sent(sqlite_database: Database) -> None:
    _, intervention_id = await customer_with_milestone(sqlite_database)
    async with sqlite_database.session() as session:
        await interventions.resolve(session, intervention_id, "dismissed", "member:1")
        await session.commit()
    await send_intervention(InterventionRef(intervention_id=intervention_id))
    (found,) = await rows(sqlite_database, Intervention)
    assert (found.state, found.send_status) == ("dismissed", "cancelled")
    assert await count(sqlite_database, Message, Message.direction == "out") == 0
