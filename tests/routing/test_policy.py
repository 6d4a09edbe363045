"""The assignment policy at fixed instants around the world: who is chosen, and why."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from crm_core.models import Customer
from heliograph import jobs
from heliograph.db import Database, utcnow
from heliograph.models import Job
from heliograph.settings import reset_settings
from inbox.conversations import reply, set_status
from inbox.models import Conversation, Message
from routing import topics
from routing.bus import CONVERSATION_REROUTED, DRAIN, ConversationRerouted
from routing.history import record
from routing.models import RoutingWait, TeamMember
from routing.queue import drain_queue, reroute_unanswered, route_conversation
from tests.utils.jobs import run_jobs
from tests.utils.routing_world import (
    assignments,
    conversation,
    customer_writes,
    give,
    route,
    team,
    utc,
    weekdays,
)

WORLD = (
    {
        "name": "Aiko Tanaka",
        "timezone": "Asia/Tokyo",
        "hours": weekdays(["09:00", "18:00"]),
        "languages": ("ja", "en"),
        "expertise": ("billing",),
    },
    {
        "name": "Oliver Bennett",
        "timezone": "Europe/London",
        "hours": weekdays(["09:00", "17:00"]),
        "languages": ("en", "fr"),
        "expertise": ("technical",),
    },
    {
        "name": "Maya Johnson",
        "timezone": "America/New_York",
        "hours": weekdays(["09:00", "17:00"]),
        "languages": ("en", "es", "pt"),
        "expertise": ("billing",),
    },
    {
        "name": "Dmitri Volkov",
        "timezone": "Europe/Moscow",
        "hours": weekdays(["22:00", "06:00"]),  # overnight, each belongs to its start day
        "languages": ("ru", "en"),
        "expertise": ("technical",),
    },
)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set HELIOGRAPH_ routing settings for one test."""
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def configure(env: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        env.setenv(f"HELIOGRAPH_{key.upper()}", value)
    reset_settings()


@pytest.mark.parametrize(
    ("now", "language", "text", "reason"),
    [
        # Tuesday 09:14 in Tokyo; Dmitri's Monday night shift also runs (03:14 in Moscow).
        (
            utc(2026, 3, 31, 0, 14),
            "ja",
            "I was charged twice",
            "Aiko Tanaka — Tokyo 09:14, speaks ja, knows billing, 0/8 open",
        ),
        # Europe has sprung forward: 08:05 UTC is 09:05 in London, Oliver has started ...
        (
            utc(2026, 3, 30, 8, 5),
            "fr",
            "the app shows an error",
            "Oliver Bennett — London 09:05, speaks fr, knows technical, 0/8 open",
        ),
        # ... a week earlier the same UTC instant is 08:05 GMT and only Tokyo works.
        (
            utc(2026, 3, 23, 8, 5),
            "fr",
            "the app shows an error",
            "Aiko Tanaka — Tokyo 17:05, does not speak fr, knows none of technical, 0/8 open",
        ),
        # Europe has fallen back: 08:30 UTC is 08:30 GMT, Oliver has not started ...
        (
            utc(2026, 10, 26, 8, 30),
            "fr",
            "hello",
            "Aiko Tanaka — Tokyo 17:30, does not speak fr, 0/8 open",
        ),
        # ... while a week earlier it was 09:30 BST.
        (
            utc(2026, 10, 19, 8, 30),
            "fr",
            "hello",
            "Oliver Bennett — London 09:30, speaks fr, 0/8 open",
        ),
        # The US has sprung forward: 13:30 UTC is 09:30 EDT in New York ...
        (
            utc(2026, 3, 9, 13, 30),
            "pt-BR",
            "where is my refund?",
            "Maya Johnson — New York 09:30, speaks pt, knows billing, 0/8 open",
        ),
        # ... a week earlier it was 08:30 EST: London (13:30 GMT) takes it.
        (
            utc(2026, 3, 2, 13, 30),
            "pt-BR",
            "where is my refund?",
            "Oliver Bennett — London 13:30, does not speak pt, knows none of billing, 0/8 open",
        ),
        # The US has fallen back: 13:30 UTC is 08:30 EST, 14:05 UTC is 09:05 EST.
        (
            utc(2026, 11, 2, 13, 30),
            "es",
            "hi",
            "Oliver Bennett — London 13:30, does not speak es, 0/8 open",
        ),
        (utc(2026, 11, 2, 14, 5), "es", "hi", "Maya Johnson — New York 09:05, speaks es, 0/8 open"),
        # Past midnight in Moscow: Monday's 22:00-06:00 shift still runs on Tuesday 00:30.
        (
            utc(2026, 6, 8, 21, 30),
            "ru",
            "login is broken",
            "Dmitri Volkov — Moscow 00:30, speaks ru, knows technical, 0/8 open",
        ),
    ],
)
async def test_the_right_member_is_chosen_around_the_world(
    sqlite_database: Database, now: datetime, language: str, text: str, reason: str
) -> None:
    ids = await team(sqlite_database, *WORLD)
    sent = await customer_writes(sqlite_database, "m1", text=text, language=language)
    routed = await route(sqlite_database, sent, now)
    assert routed is not None and routed.reason == reason
    chosen = reason.split(" ")[0]
    conv = await conversation(sqlite_database, sent.conversation_id)
    assert conv.assignee_id == ids[chosen] and conv.assigned_at == now
    [history] = await assignments(sqlite_database, sent.conversation_id)
    assert (history.member_id, history.kind, history.reason, history.at) == (
        ids[chosen],
        "policy",
        reason,
        now,
    )


async def test_saturday_night_in_moscow_has_nobody_and_the_conversation_waits(
    sqlite_database: Database,
) -> None:
    await team(sqlite_database, *WORLD)
    sent = await customer_writes(sqlite_database, "m1", language="ru")
    # Sunday 00:30 in Moscow: Friday's night shift is over and Saturday has none.
    routed = await route(sqlite_database, sent, utc(2026, 6, 13, 21, 30))
    assert routed is not None and (routed.member_id, routed.reason) == (None, "nobody is on shift")
    assert (await conversation(sqlite_database, sent.conversation_id)).assignee_id is None
    assert await assignments(sqlite_database, sent.conversation_id) == []


# --- preferences, in order ---------------------------------------------------------------------

NOON = utc(2026, 6, 8, 12, 0)


async def _five(database: Database) -> dict[str, int]:
    ids = await team(
        database,
        {"name": "Ann", "languages": ("en",)},
        {"name": "Bea", "languages": ("pt",)},
        {"name": "Cid", "languages": ("pt",), "expertise": ("billing",)},
        {"name": "Dee", "languages": ("pt",), "expertise": ("billing",)},
        {"name": "Eve", "languages": ("pt",), "expertise": ("billing",)},
    )
    # Cid has three open, Dee and Eve one each; Dee's was assigned longer ago.
    for n, who in enumerate(["Cid", "Cid", "Cid", "Dee", "Eve"]):
        other = await customer_writes(database, f"load-{n}", f"other-{n}")
        await give(database, other.conversation_id, ids[who], NOON - timedelta(hours=1))
    async with database.session() as session:
        for who, hours in (("Dee", 5), ("Eve", 1)):
            await session.execute(
                update(TeamMember)
                .where(TeamMember.id == ids[who])
                .values(last_assigned_at=NOON - timedelta(hours=hours))
            )
        await session.commit()
    return ids


async def test_preferences_language_then_expertise_then_load_then_idle(
    sqlite_database: Database,
) -> None:
    ids = await _five(sqlite_database)
    billing = await customer_writes(sqlite_database, "m1", "c1", "refund please", language="pt")
    routed = await route(sqlite_database, billing, NOON)
    # pt + billing: Cid, Dee, Eve; lowest load: Dee, Eve; longest idle: Dee.
    assert routed is not None and routed.member_id == ids["Dee"]
    assert routed.reason == "Dee — UTC 12:00, speaks pt, knows billing, 1/8 open"

    plain = await customer_writes(sqlite_database, "m2", "c2", "hello", language="pt")
    routed = await route(sqlite_database, plain, NOON)
    assert routed is not None and routed.reason == "Bea — UTC 12:00, speaks pt, 0/8 open"

    english = await customer_writes(sqlite_database, "m3", "c3", "hello", language="en")
    routed = await route(sqlite_database, english, NOON)
    assert routed is not None and routed.reason == "Ann — UTC 12:00, speaks en, 0/8 open"


async def test_the_customers_previous_agent_comes_first(sqlite_database: Database) -> None:
    ids = await _five(sqlite_database)
    first = await customer_writes(sqlite_database, "m1", "c1", "refund please", language="pt")
    async with sqlite_database.session() as session:
        conv = await session.get(Conversation, first.conversation_id)
        await record(session, conv, ids["Ann"], "manual", "test setup", now=NOON)  # type: ignore[arg-type]
        await session.commit()
        await set_status(session, first.conversation_id, "resolved")
        # The same customer opens another thread later.
        second = Conversation(customer_id=first.customer_id, channel="api", thread_key="t2")
        session.add(second)
        await session.commit()
    async with sqlite_database.session() as session:
        routed = await route_conversation(session, second.id, now=NOON)  # type: ignore[arg-type]
        await session.commit()
    assert routed is not None and routed.member_id == ids["Ann"]
    assert routed.reason == (
        "Ann — UTC 12:00, the customer's previous agent, does not speak pt, 0/8 open"
    )


async def test_language_can_be_a_hard_requirement(
    sqlite_database: Database, settings_env: pytest.MonkeyPatch
) -> None:
    await team(sqlite_database, {"name": "Ann", "languages": ("en",)})
    soft = await customer_writes(sqlite_database, "m1", "c1", language="pt")
    routed = await route(sqlite_database, soft, NOON)
    assert routed is not None and routed.reason == "Ann — UTC 12:00, does not speak pt, 0/8 open"

    configure(settings_env, routing_require='["language"]')
    hard = await customer_writes(sqlite_database, "m2", "c2", language="pt")
    routed = await route(sqlite_database, hard, NOON)
    assert routed is not None and routed.member_id is None
    assert routed.reason == "nobody free on shift speaks pt"


async def test_full_away_and_idle_members_are_not_eligible(
    sqlite_database: Database, settings_env: pytest.MonkeyPatch
) -> None:
    ids = await team(
        sqlite_database,
        {"name": "Full", "capacity": 1},
        {"name": "Away", "availability": "away"},
        {"name": "Gone", "availability": "offline"},
        {"name": "Idle", "last_active_at": NOON - timedelta(hours=2)},
        {"name": "Busy", "capacity": 3},
    )
    for n, who in enumerate(["Full", "Busy", "Busy"]):
        other = await customer_writes(sqlite_database, f"load-{n}", f"other-{n}")
        await give(sqlite_database, other.conversation_id, ids[who], NOON)
    configure(settings_env, routing_idle_away_minutes="30")
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, NOON)
    assert routed is not None and routed.reason == "Busy — UTC 12:00, 2/3 open"
    again = await customer_writes(sqlite_database, "m2", "c2")
    routed = await route(sqlite_database, again, NOON)
    assert routed is not None and routed.member_id is None
    assert routed.reason == "everyone on shift is at capacity"


async def test_a_stale_load_never_overfills_a_member(sqlite_database: Database) -> None:
    ids = await team(sqlite_database, {"name": "Solo", "capacity": 1}, {"name": "Duo"})
    warm = await customer_writes(sqlite_database, "m0", "c0")
    await route(sqlite_database, warm, NOON)  # the snapshot now has loads cached
    async with sqlite_database.session() as session:  # another process fills Solo up
        await session.execute(
            update(Conversation)
            .where(Conversation.assignee_id == ids["Duo"])
            .values(assignee_id=ids["Solo"])
        )
        await session.commit()
    sent = await customer_writes(sqlite_database, "m1", "c1")
    routed = await route(sqlite_database, sent, NOON)
    assert routed is not None and routed.member_id == ids["Duo"]


# --- reopen, VIP, topics -----------------------------------------------------------------------


async def test_a_reopened_conversation_goes_to_whoever_is_on_shift_now(
    sqlite_database: Database,
) -> None:
    ids = await team(sqlite_database, *WORLD)
    monday_london = utc(2026, 6, 8, 10, 0)  # 11:00 BST
    sent = await customer_writes(sqlite_database, "m1", language="en")
    routed = await route(sqlite_database, sent, monday_london)
    assert routed is not None and routed.member_id == ids["Oliver"]
    async with sqlite_database.session() as session:
        await set_status(session, sent.conversation_id, "resolved")
        await session.commit()

    # Reopened the same afternoon: Oliver is on shift and keeps it (no new history).
    again = await customer_writes(sqlite_database, "m2", language="en")
    assert again.conversation_id == sent.conversation_id
    await route(sqlite_database, again, monday_london + timedelta(hours=3), reopened=True)
    assert len(await assignments(sqlite_database, sent.conversation_id)) == 1

    async with sqlite_database.session() as session:
        await set_status(session, sent.conversation_id, "resolved")
        await session.commit()
    # Reopened at 02:00 in London (10:00 in Tokyo): Oliver sleeps, Aiko takes it.
    late = await customer_writes(sqlite_database, "m3", language="en")
    routed = await route(sqlite_database, late, utc(2026, 6, 9, 1, 0), reopened=True)
    assert routed is not None and routed.member_id == ids["Aiko"]
    assert routed.reason == "Aiko Tanaka — Tokyo 10:00, speaks en, 0/8 open"

    async with sqlite_database.session() as session:
        await set_status(session, sent.conversation_id, "resolved")
        await session.commit()
    # Reopened on Sunday: nobody is on shift, so it goes back to the queue.
    sunday = await customer_writes(sqlite_database, "m4", language="en")
    routed = await route(sqlite_database, sunday, utc(2026, 6, 14, 12, 0), reopened=True)
    assert routed is not None and routed.member_id is None
    conv = await conversation(sqlite_database, sent.conversation_id)
    assert conv.assignee_id is None
    last = (await assignments(sqlite_database, sent.conversation_id))[-1]
    assert (last.kind, last.member_id, last.previous_member_id) == ("queued", None, ids["Aiko"])
    assert last.reason == (
        "reopened while Aiko Tanaka cannot take it (nobody is on shift); waiting in the queue"
    )


async def test_vip_customers_get_high_priority_and_text_gives_topics(
    sqlite_database: Database,
) -> None:
    await team(sqlite_database, {"name": "Ann"})
    sent = await customer_writes(sqlite_database, "m1", text="My INVOICE shows I was charged twice")
    async with sqlite_database.session() as session:
        await session.execute(update(Customer).values(vip=True))
        await session.commit()

    async def programs(_: object, customer_ids: list[int]) -> dict[int, list[str]]:
        return {i: ["Bookkeeping", "billing"] for i in customer_ids}

    topics.program_tag_sources.append(programs)
    try:
        await route(sqlite_database, sent, NOON)
    finally:
        topics.program_tag_sources.remove(programs)
    conv = await conversation(sqlite_database, sent.conversation_id)
    assert conv.priority == "high"
    assert conv.topic_tags == ["billing", "bookkeeping"]


def test_keyword_rules_match_words_prefixes_and_phrases() -> None:
    rules = {"billing": ["refund*", "charged"], "technical": ["not working"], "x": ["a.b"]}
    assert topics.tags_for_text("Refunded yet?", rules) == ["billing"]
    assert topics.tags_for_text("I was surcharged", rules) == []
    assert topics.tags_for_text("the app is NOT   working", rules) == ["technical"]
    assert topics.tags_for_text("a.b", rules) == ["x"] and topics.tags_for_text("axb", rules) == []


# --- the queue --------------------------------------------------------------------------------


async def test_the_queue_drains_when_someone_comes_on_shift_and_the_customer_knew_when(
    sqlite_database: Database,
) -> None:
    ids = await team(
        sqlite_database,
        {"name": "Oliver", "timezone": "Europe/London", "hours": weekdays(["09:00", "17:00"])},
    )
    monday_early = utc(2026, 6, 8, 7, 0)  # 08:00 in London, 04:00 in Sao Paulo
    sent = await customer_writes(sqlite_database, "m1", timezone="America/Sao_Paulo")
    routed = await route(sqlite_database, sent, monday_early)
    assert routed is not None and routed.member_id is None

    async with sqlite_database.read_session() as session:
        [notice] = (
            (await session.execute(select(Message).where(Message.author_type == "system")))
            .scalars()
            .all()
        )
        wait = await session.get(RoutingWait, sent.conversation_id)
        drain_job = (await session.execute(select(Job).where(Job.kind == DRAIN.name))).scalar_one()
    # Oliver starts at 09:00 BST = 08:00 UTC = 05:00 in Sao Paulo.
    assert notice.text.endswith("we'll answer at 05:00 your time.")
    assert notice.direction == "out" and notice.delivery_status == "queued"
    assert wait is not None and wait.promised_at == utc(2026, 6, 8, 8, 0)
    assert drain_job.run_at == utc(2026, 6, 8, 8, 0)  # drained at the promised instant

    # The customer writes again while waiting: still one notice.
    more = await customer_writes(sqlite_database, "m2", timezone="America/Sao_Paulo")
    await route(sqlite_database, more, monday_early + timedelta(minutes=10))
    async with sqlite_database.read_session() as session:
        notices = await session.execute(select(Message).where(Message.author_type == "system"))
        assert len(notices.scalars().all()) == 1

    assert await drain_queue(sqlite_database, now=utc(2026, 6, 8, 7, 59)) == 0
    assert await drain_queue(sqlite_database, now=utc(2026, 6, 8, 8, 0)) == 1
    conv = await conversation(sqlite_database, sent.conversation_id)
    assert conv.assignee_id == ids["Oliver"]
    [history] = await assignments(sqlite_database, sent.conversation_id)
    assert history.reason == "Oliver — London 09:00, 0/8 open"
    async with sqlite_database.read_session() as session:
        assert await session.get(RoutingWait, sent.conversation_id) is None


async def test_the_promise_says_tomorrow_and_uses_utc_without_a_customer_zone(
    sqlite_database: Database,
) -> None:
    await team(
        sqlite_database,
        {"name": "Aiko", "timezone": "Asia/Tokyo", "hours": weekdays(["09:00", "18:00"])},
    )
    friday_night = utc(2026, 6, 12, 12, 0)  # Friday 21:00 in Tokyo
    tokyo = await customer_writes(sqlite_database, "m1", "c1", timezone="Asia/Tokyo")
    nowhere = await customer_writes(sqlite_database, "m2", "c2")
    tuesday = await customer_writes(sqlite_database, "m3", "c3", timezone="Asia/Tokyo")
    await route(sqlite_database, tokyo, friday_night)
    await route(sqlite_database, nowhere, friday_night)
    await route(sqlite_database, tuesday, utc(2026, 6, 8, 10, 0))  # Monday 19:00 JST
    async with sqlite_database.read_session() as session:
        texts = {
            m.conversation_id: m.text
            for m in (
                await session.execute(select(Message).where(Message.author_type == "system"))
            ).scalars()
        }
    assert texts[tokyo.conversation_id].endswith("we'll answer on Monday at 09:00 your time.")
    assert texts[nowhere.conversation_id].endswith("we'll answer on Monday at 00:00 UTC.")
    assert texts[tuesday.conversation_id].endswith("we'll answer tomorrow at 09:00 your time.")


async def test_freed_capacity_drains_the_queue_at_once(database: Database) -> None:
    ids = await team(database, {"name": "Solo", "capacity": 1})
    first = await customer_writes(database, "m1", "c1")
    second = await customer_writes(database, "m2", "c2")
    await run_jobs(database)  # the route jobs, on the real clock
    assert (await conversation(database, first.conversation_id)).assignee_id == ids["Solo"]
    assert (await conversation(database, second.conversation_id)).assignee_id is None
    async with database.session() as session:
        await set_status(session, first.conversation_id, "resolved")
        await session.commit()
    await run_jobs(database)
    assert (await conversation(database, second.conversation_id)).assignee_id == ids["Solo"]


# --- unanswered assignments move on ------------------------------------------------------------


_REROUTED_SEEN = jobs.JobKind("test.rerouted", ConversationRerouted)
_rerouted: list[ConversationRerouted] = []


@jobs.handler(_REROUTED_SEEN)
async def _seen(payload: ConversationRerouted) -> None:
    _rerouted.append(payload)


@pytest.fixture
def rerouted_events() -> Iterator[list[ConversationRerouted]]:
    """Record ``conversation.rerouted`` as the chat surfaces will hear it."""
    _rerouted.clear()
    jobs.subscribe(CONVERSATION_REROUTED, _REROUTED_SEEN)
    yield _rerouted
    jobs.unsubscribe(CONVERSATION_REROUTED, _REROUTED_SEEN)


async def test_an_unanswered_assignment_moves_after_n_minutes_and_the_agent_is_told(
    sqlite_database: Database, rerouted_events: list[ConversationRerouted]
) -> None:
    ids = await team(sqlite_database, {"name": "Slow"}, {"name": "Quick"})
    sent = await customer_writes(sqlite_database, "m1", "c1")
    answered = await customer_writes(sqlite_database, "m2", "c2")
    now = utcnow()
    await route(sqlite_database, sent, now)
    await route(sqlite_database, answered, now)
    await give(sqlite_database, answered.conversation_id, ids["Slow"], now)
    async with sqlite_database.session() as session:
        await reply(session, answered.conversation_id, "on it", author_id=ids["Slow"])
        await session.commit()
    assert (await conversation(sqlite_database, sent.conversation_id)).assignee_id == ids["Slow"]

    assert await reroute_unanswered(sqlite_database, now + timedelta(minutes=14)) == 0
    assert await reroute_unanswered(sqlite_database, now + timedelta(minutes=16)) == 1
    conv = await conversation(sqlite_database, sent.conversation_id)
    assert conv.assignee_id == ids["Quick"]
    last = (await assignments(sqlite_database, sent.conversation_id))[-1]
    assert last.kind == "reroute" and last.previous_member_id == ids["Slow"]
    assert last.reason.startswith("Slow did not reply within 15 min; Quick — UTC ")
    # The answered conversation stayed; Slow is away until they act again.
    assert (await conversation(sqlite_database, answered.conversation_id)).assignee_id == ids[
        "Slow"
    ]
    async with sqlite_database.read_session() as session:
        slow = await session.get(TeamMember, ids["Slow"])
        assert slow is not None and (slow.availability, slow.availability_auto) == ("away", True)
    await run_jobs(sqlite_database)
    assert [(e.from_member_id, e.to_member_id) for e in rerouted_events] == [
        (ids["Slow"], ids["Quick"])
    ]
    assert rerouted_events[0].reason == last.reason


async def test_capacity_can_count_per_channel(
    sqlite_database: Database, settings_env: pytest.MonkeyPatch
) -> None:
    ids = await team(sqlite_database, {"name": "Solo", "capacity": 1})
    busy = await customer_writes(sqlite_database, "m0", "c0")
    await give(sqlite_database, busy.conversation_id, ids["Solo"], NOON)
    sms = await customer_writes(sqlite_database, "m1", "c1", channel="sms")
    routed = await route(sqlite_database, sms, NOON)
    assert routed is not None and routed.reason == "everyone on shift is at capacity"

    configure(settings_env, routing_capacity_per_channel="true")
    routed = await route(sqlite_database, sms, NOON)
    assert routed is not None and routed.reason == "Solo — UTC 12:00, 0/1 open on sms"
    more = await customer_writes(sqlite_database, "m2", "c2", channel="sms")
    routed = await route(sqlite_database, more, NOON)
    assert routed is not None and routed.reason == "everyone on shift is at capacity"
