"""The read queries behind /hg and the CEO bot, at fixed instants on both engines.

Tuesday 1 December 2026, 10:00 UTC: Oliver (London) and Lena (Moscow) are on shift,
Aiko (Tokyo) finished at 09:00 UTC and Maya (New York) starts at 14:00 UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from crm_core.models import Customer, Intervention, JourneyChange
from handoff.models import Handoff
from heliograph.db import Database
from heliograph.settings import reset_settings
from inbox.models import Conversation, Message
from reporting import insights
from tests.utils.routing_world import ALWAYS, customer_writes, team, utc, weekdays

NOW = utc(2026, 12, 1, 10, 0)
AIKO = {"name": "Aiko Tanaka", "timezone": "Asia/Tokyo", "region": "APAC"}
OLIVER = {"name": "Oliver Bennett", "timezone": "Europe/London", "region": "EMEA"}
LENA = {"name": "Lena Petrova", "timezone": "Europe/Moscow", "region": "EMEA", "capacity": 5}
MAYA = {"name": "Maya Cruz", "timezone": "America/New_York", "region": "AMER"}
TEAM = (
    {**AIKO, "hours": weekdays(["09:00", "18:00"])},
    {**OLIVER, "hours": weekdays(["09:00", "17:00"])},
    {**LENA, "hours": ALWAYS},
    {**MAYA, "hours": weekdays(["09:00", "17:00"])},
)
_n = iter(range(1, 10_000))


async def conv(
    database: Database,
    created: datetime,
    *,
    channel: str = "api",
    sender: str | None = None,
    first_response: timedelta | None = None,
    resolved: timedelta | None = None,
    **fields: Any,
) -> int:
    """A customer's conversation as if it had started at ``created`` (its first message
    too), answered and resolved that long after."""
    n = next(_n)
    result = await customer_writes(
        database,
        f"m{n}",
        sender or f"cust-{n}",
        f"question {n}",
        name=f"Customer {n}",
    )
    values: dict[str, Any] = {
        "created_at": created,
        "channel": channel,
        "waiting_since": created,
        **fields,
    }
    if first_response is not None:
        values["first_response_at"] = created + first_response
        values["waiting_since"] = None
    if resolved is not None:
        values["resolved_at"] = created + resolved
        values["status"] = "resolved"
    async with database.session() as session:
        await session.execute(
            update(Conversation).where(Conversation.id == result.conversation_id).values(**values)
        )
        await session.execute(
            update(Message)
            .where(Message.id == result.message_id)
            .values(created_at=created, channel=channel)
        )
        await session.commit()
    return result.conversation_id


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)


async def test_on_shift_and_pulse_by_region_with_local_times(database: Database) -> None:
    ids = await team(database, *TEAM)
    await conv(database, NOW - minutes(30), assignee_id=ids["Oliver"])
    await conv(database, NOW - minutes(20), assignee_id=ids["Oliver"])
    await conv(database, NOW - minutes(50))  # in the queue
    async with database.read_session() as session:
        shift = await insights.on_shift(session, NOW)
        pulse = await insights.pulse(session, NOW, "Europe/London")

    by_name = {m.name: m for m in shift}
    assert set(by_name) == {"Oliver Bennett", "Lena Petrova"}
    assert by_name["Oliver Bennett"].local_time.strftime("%H:%M") == "10:00"
    assert by_name["Lena Petrova"].local_time.strftime("%H:%M %Z") == "13:00 MSK"
    assert (by_name["Oliver Bennett"].load, by_name["Oliver Bennett"].capacity) == (2, 8)
    assert (by_name["Lena Petrova"].load, by_name["Lena Petrova"].capacity) == (0, 5)
    assert shift[0].name == "Oliver Bennett"  # who leaves next first (17:00 vs never)

    assert list(pulse.regions) == ["EMEA"]
    assert {m.name for m in pulse.regions["EMEA"]} == {"Oliver Bennett", "Lena Petrova"}
    assert (pulse.open, pulse.waiting) == (3, 1)
    assert pulse.oldest_wait == minutes(50)
    assert pulse.sla_breaches == 0  # nothing older than the 60-minute normal target


async def test_queue_summary_most_urgent_first_and_the_oldest_wait(database: Database) -> None:
    await conv(database, NOW - minutes(90))
    urgent = await conv(database, NOW - minutes(5), priority="urgent")
    await conv(database, NOW - minutes(40), status="snoozed")  # not in the queue
    async with database.read_session() as session:
        queue = await insights.queue_summary(session, NOW)
    assert queue.total == 2
    assert queue.oldest_wait == minutes(90)
    assert queue.waiting[0].conversation_id == urgent
    assert [(w.priority, w.waited) for w in queue.waiting] == [
        ("urgent", minutes(5)),
        ("normal", minutes(90)),
    ]
    assert queue.waiting[1].customer.startswith("Customer ")


async def test_sla_breaches_use_the_per_priority_first_response_target(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await team(database, *TEAM)
    urgent_late = await conv(database, NOW - minutes(20), priority="urgent")  # target 15
    await conv(database, NOW - minutes(30))  # normal, target 60: in time
    normal_late = await conv(database, NOW - minutes(95), assignee_id=ids["Oliver"])
    await conv(database, NOW - minutes(200), first_response=minutes(3))  # answered
    await conv(database, NOW - minutes(300), resolved=minutes(100))  # resolved
    async with database.read_session() as session:
        breaches = await insights.sla_breaches(session, NOW)
        pulse = await insights.pulse(session, NOW)
    assert [(b.conversation_id, b.assignee) for b in breaches] == [
        (normal_late, "Oliver Bennett"),  # 35 min over
        (urgent_late, None),  # 5 min over
    ]
    assert breaches[1].target == minutes(15) and breaches[1].waited == minutes(20)
    assert pulse.sla_breaches == 2

    monkeypatch.setenv("HELIOGRAPH_SLA_FIRST_RESPONSE_MINUTES", '{"urgent": 30, "normal": 0}')
    reset_settings()
    async with database.read_session() as session:
        assert await insights.sla_breaches(session, NOW) == []


async def test_volume_medians_per_channel_and_region(database: Database) -> None:
    ids = await team(database, *TEAM)
    start, end = utc(2026, 12, 1), utc(2026, 12, 2)
    oliver: dict[str, Any] = {"assignee_id": ids["Oliver"]}
    for reply in (2, 4, 10):
        await conv(database, NOW - minutes(60), channel="telegram", first_response=minutes(reply))
    await conv(database, NOW - minutes(50), channel="sms", first_response=minutes(1), **oliver)
    await conv(
        database,
        NOW - minutes(40),
        channel="sms",
        first_response=minutes(3),
        resolved=minutes(30),
        **oliver,
    )
    await conv(database, NOW - minutes(30), channel="sms", **oliver)  # not answered yet
    await conv(database, utc(2026, 11, 30, 12), channel="sms", first_response=minutes(99))
    async with database.read_session() as session:
        stats = await insights.volume_stats(session, start, end)

    channels = {line.key: line for line in stats.by_channel}
    assert set(channels) == {"telegram", "sms"}
    assert (channels["telegram"].opened, channels["telegram"].inbound) == (3, 3)
    assert channels["telegram"].first_response_median == minutes(4)
    assert channels["telegram"].resolution_median is None
    assert (channels["sms"].opened, channels["sms"].resolved) == (3, 1)
    assert channels["sms"].first_response_median == minutes(2)  # of 1 and 3; yesterday's out
    assert channels["sms"].resolution_median == minutes(30)
    assert (stats.total_opened, stats.total_inbound) == (6, 6)
    regions = {line.key: line for line in stats.by_region}
    assert (regions["EMEA"].opened, regions["EMEA"].first_response_median) == (3, minutes(2))
    assert (regions[insights.NO_REGION].opened, regions[insights.NO_REGION].resolved) == (3, 0)


async def test_today_is_the_askers_local_day(database: Database) -> None:
    ids = await team(database, *TEAM)
    # 16:00 UTC on 30 November is already 1 December in Tokyo (01:00), still 30th in London.
    await conv(database, utc(2026, 11, 30, 16), first_response=minutes(20))
    await conv(database, utc(2026, 12, 1, 8), first_response=minutes(2))
    tokyo = insights.local_day(NOW, "Asia/Tokyo")
    assert tokyo == (utc(2026, 11, 30, 15), utc(2026, 12, 1, 15))
    async with database.session() as session:
        for hours_ago, acked in ((18, 7), (3, None), (1, 2)):
            session.add(
                Handoff(
                    conversation_id=1,
                    from_member_id=ids["Aiko"],
                    to_member_id=ids["Oliver"],
                    kind="shift_end",
                    reason="shift ended",
                    created_at=NOW - timedelta(hours=hours_ago),
                    acknowledged_at=None
                    if acked is None
                    else NOW - timedelta(hours=hours_ago) + minutes(acked),
                    state="pending" if acked is None else "acknowledged",
                )
            )
        await session.commit()
    async with database.read_session() as session:
        in_tokyo = await insights.pulse(session, NOW, "Asia/Tokyo")
        in_london = await insights.pulse(session, NOW, "Europe/London")
        handoffs_tokyo = await insights.handoffs_today(session, NOW, "Asia/Tokyo")
        handoffs_london = await insights.handoffs_today(session, NOW, "Europe/London")
        stats_tokyo = await insights.volume_stats(session, *tokyo)
    assert in_tokyo.first_response_median_today == minutes(11)  # of 20 and 2
    assert in_london.first_response_median_today == minutes(2)
    assert stats_tokyo.total_opened == 2
    assert [h.time_to_acknowledge for h in handoffs_tokyo] == [minutes(7), None, minutes(2)]
    assert [h.time_to_acknowledge for h in handoffs_london] == [None, minutes(2)]
    assert (handoffs_london[0].from_member, handoffs_london[0].to_member) == (
        "Aiko Tanaka",
        "Oliver Bennett",
    )


async def test_customer_summary_profile_journey_and_open_conversations(
    database: Database,
) -> None:
    first = await customer_writes(database, "s1", "ana", "hi", name="Ana Lima", email="ana@x.org")
    async with database.session() as session:
        await session.execute(
            update(Customer)
            .where(Customer.id == first.customer_id)
            .values(journey_stage="commitment", lifetime_value=Decimal("420.00"))
        )
        for frm, to, day in (("discovery", "exploration", 2), ("exploration", "commitment", 9)):
            session.add(
                JourneyChange(
                    customer_id=first.customer_id,
                    from_stage=frm,
                    to_stage=to,
                    rule="test",
                    at=utc(2026, 11, day),
                )
            )
        await session.commit()
    async with database.read_session() as session:
        [found] = await insights.customer_summary(session, "ANA@x.org")
        by_name = await insights.customer_summary(session, "ana l")
        nobody = await insights.customer_summary(session, "zed@x.org")
    assert (found.name, found.emails, found.journey_stage) == (
        "Ana Lima",
        ["ana@x.org"],
        "commitment",
    )
    assert [(j.from_stage, j.to_stage) for j in found.journey] == [
        ("discovery", "exploration"),
        ("exploration", "commitment"),
    ]
    assert [c.conversation_id for c in found.open_conversations] == [first.conversation_id]
    assert found.last_contact is not None
    assert found.lifetime_value == Decimal("420.00")
    assert [c.customer_id for c in by_name] == [found.customer_id]
    assert nobody == []


async def test_at_risk_most_valuable_first(database: Database) -> None:
    customers = {}
    for name, ltv in (("Low Value", "10"), ("High Value", "900"), ("Calm", "5000")):
        result = await customer_writes(database, f"r-{name}", name, "hi", name=name)
        customers[name] = result.customer_id
        async with database.session() as session:
            await session.execute(
                update(Customer)
                .where(Customer.id == result.customer_id)
                .values(lifetime_value=Decimal(ltv))
            )
            await session.commit()
    async with database.session() as session:
        for name, rule, state in (
            ("Low Value", "inactive_7d", "open"),
            ("High Value", "low_engagement", "open"),
            ("High Value", "inactive_7d", "open"),
            ("Calm", "inactive_7d", "done"),  # handled: not at risk
        ):
            session.add(
                Intervention(
                    customer_id=customers[name],
                    rule=rule,
                    cause_key=f"{name}-{rule}",
                    reason=f"{rule} for {name}",
                    suggested_message="hello",
                    state=state,
                )
            )
        await session.commit()
    async with database.read_session() as session:
        risky = await insights.at_risk(session)
        top = await insights.at_risk(session, limit=1)
    assert [(r.name, r.lifetime_value) for r in risky] == [
        ("High Value", Decimal("900")),
        ("Low Value", Decimal("10")),
    ]
    assert risky[0].rules == ["inactive_7d", "low_engagement"]
    assert [r.name for r in top] == ["High Value"]
