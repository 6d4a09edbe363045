"""Properties over random teams and schedules: never off shift, never over capacity, never lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from crm_core.models import ContactPoint, Customer, Identity
from heliograph.db import Database
from heliograph.models import Job
from inbox import assignment as inbox_assignment
from inbox.conversations import set_status
from inbox.models import Conversation, Message
from routing import snapshot
from routing.models import Assignment, RoutingWait, TeamMember
from routing.policy import MemberView, PolicyConfig, Wanted, choose, effective_availability
from routing.queue import drain_queue, route_conversation
from routing.schedule import is_on_shift
from tests.utils.factories import receive

ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LANGUAGES = ["en", "pt", "ja", "ru"]
TAGS = ["billing", "technical", "onboarding"]

hhmm = st.integers(0, 48).map(lambda h: f"{h // 2:02d}:{h % 2 * 30:02d}")
weekly = st.dictionaries(
    st.sampled_from(WEEKDAYS), st.lists(st.tuples(hhmm, hhmm).map(list), max_size=2), max_size=7
)
# Half the members work around the clock, so that choices among several are common.
ALWAYS = {day: [["00:00", "24:00"]] for day in WEEKDAYS}
member_specs = st.fixed_dictionaries(
    {
        "timezone": st.sampled_from(ZONES),
        "weekly_hours": st.one_of(st.just(ALWAYS), weekly),
        "languages": st.lists(st.sampled_from(LANGUAGES), max_size=2, unique=True),
        "expertise": st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
        "capacity": st.integers(0, 5),
        "availability": st.sampled_from(["online", "online", "online", "away", "offline"]),
    }
)
instants = st.datetimes(datetime(2026, 3, 1), datetime(2026, 11, 30)).map(
    lambda d: d.replace(tzinfo=UTC)
)
configs = st.builds(PolicyConfig, require_language=st.booleans(), require_expertise=st.booleans())


# --- the pure policy against a step-by-step reference ----------------------------------------


def reference_choice(
    members: list[MemberView],
    wanted: Wanted,
    now: datetime,
    loads: dict[int, int],
    config: PolicyConfig,
) -> set[int]:
    """Filter eligibility from first principles, then narrow by each preference in turn.
    Returns the ids the policy may pick (ties broken by id afterwards)."""
    eligible = [
        m
        for m in members
        if m.id not in wanted.exclude
        and is_on_shift(m, now)
        and effective_availability(m, now) == "online"
        and loads[m.id] < m.capacity
        and not (config.require_language and wanted.language and wanted.language not in m.speaks)
        and not (config.require_expertise and wanted.tags and not wanted.tags & m.knows)
    ]
    steps = [
        lambda m: m.id == wanted.previous_member_id,
        lambda m: wanted.language is None or wanted.language in m.speaks,
        lambda m: len(wanted.tags & m.knows),
        lambda m: -loads[m.id] / m.capacity,
        lambda m: -loads[m.id],
        lambda m: -(m.last_assigned_at or datetime.min.replace(tzinfo=UTC)).timestamp(),
    ]
    for score in steps:
        if not eligible:
            break
        best = max(score(m) for m in eligible)
        eligible = [m for m in eligible if score(m) == best]
    return {min(m.id for m in eligible)} if eligible else set()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(member_specs, min_size=1, max_size=8),
    st.lists(st.integers(0, 4), min_size=8, max_size=8),
    st.lists(st.none() | instants, min_size=8, max_size=8),
    instants,
    st.none() | st.sampled_from(LANGUAGES),
    st.frozensets(st.sampled_from(TAGS), max_size=2),
    st.none() | st.integers(1, 8),
    st.frozensets(st.integers(1, 8), max_size=2),
    configs,
)
def test_choose_picks_the_reference_member(
    specs: list[dict[str, Any]],
    load_list: list[int],
    idle: list[datetime | None],
    now: datetime,
    language: str | None,
    tags: frozenset[str],
    previous: int | None,
    exclude: frozenset[int],
    config: PolicyConfig,
) -> None:
    members = [
        MemberView(id=i + 1, name=f"M{i + 1}", exceptions=[], last_assigned_at=idle[i], **spec)
        for i, spec in enumerate(specs)
    ]
    loads = {i + 1: load_list[i] for i in range(8)}
    wanted = Wanted.build("api", language, tags, previous, None, exclude)
    chosen = choose(members, wanted, now, lambda mid, _: loads[mid], config)
    expected = reference_choice(members, wanted, now, loads, config)
    event("chosen" if chosen else "nobody")
    assert ({chosen.member.id} if chosen else set()) == expected
    # The snapshot's shortcut (previous agent, then speakers, then everyone) agrees.
    team = snapshot.TeamSnapshot(members, ())
    team.loads = {(mid, ""): load for mid, load in loads.items()}
    fast = team.choose(wanted, now, config)
    assert (fast and fast.member.id) == (chosen and chosen.member.id)
    if chosen is not None:
        m = chosen.member
        assert is_on_shift(m, now) and m.availability == "online"
        assert chosen.load == loads[m.id] < m.capacity


# --- the whole path, on a database ------------------------------------------------------------


async def _clear(database: Database) -> None:
    async with database.session() as session:
        for model in (
            Assignment,
            RoutingWait,
            Job,
            Message,
            Conversation,
            Identity,
            ContactPoint,
            Customer,
            TeamMember,
        ):
            await session.execute(delete(model))
        await session.commit()
    snapshot.invalidate()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(member_specs, min_size=1, max_size=5),
    st.lists(
        st.tuples(st.none() | st.sampled_from(LANGUAGES), st.sampled_from(["hi", "refund", "bug"])),
        min_size=1,
        max_size=8,
    ),
    instants,
    st.integers(0, 72 * 60),
    st.lists(st.booleans(), min_size=8, max_size=8),
)
async def test_never_off_shift_never_over_capacity_never_lost(
    sqlite_database: Database,
    specs: list[dict[str, Any]],
    messages: list[tuple[str | None, str]],
    first: datetime,
    later_minutes: int,
    resolve: list[bool],
) -> None:
    await _clear(sqlite_database)
    async with sqlite_database.session() as session:
        for n, spec in enumerate(specs):
            session.add(TeamMember(name=f"M{n}", email=f"m{n}@team.example", **spec))
        await session.commit()
    results = []
    for n, (language, text) in enumerate(messages):
        results.append(
            await receive(sqlite_database, f"m{n}", f"c{n}", text=text, language=language)
        )
        async with sqlite_database.session() as session:
            await route_conversation(
                session, results[-1].conversation_id, message_id=results[-1].message_id, now=first
            )
            await session.commit()
    later = first + timedelta(minutes=later_minutes)
    async with sqlite_database.session() as session:
        for result, done in zip(results, resolve, strict=False):
            if done:
                await set_status(session, result.conversation_id, "resolved")
        await session.commit()
    await drain_queue(sqlite_database, now=later)

    async with sqlite_database.read_session() as session:
        members = {m.id: m for m in (await session.execute(select(TeamMember))).scalars()}
        conversations = (await session.execute(select(Conversation))).scalars().all()
        history = (await session.execute(select(Assignment))).scalars().all()
        queued = {c.id for c in await inbox_assignment.queued(session)}
    event(f"assigned: {min(len(history), 3)}+, queued: {min(len(queued), 3)}+")
    for row in history:  # every policy decision went to someone on shift and online
        assert row.kind == "policy" and row.member_id is not None
        member = members[row.member_id]
        assert is_on_shift(member, row.at), row.reason
        assert member.availability == "online"
    for member in members.values():  # never over capacity (nobody was full to begin with)
        open_now = [
            c for c in conversations if c.assignee_id == member.id and c.status != "resolved"
        ]
        assert len(open_now) <= member.capacity
    for conv in conversations:  # never lost
        if conv.status != "resolved":
            assert (conv.assignee_id is None) == (conv.id in queued)
            assert conv.assignee_id is not None or conv.id in queued
