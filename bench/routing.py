"""Routing: one assignment decision with 1,000 team members and 100,000 open conversations.

Setup (not timed): a freshly migrated database with 1,000 members in 12 time zones (day
shifts in their local time, a fifth around the clock), 1-3 languages and 1-2 expertise
tags each, capacity 150; 50,000 customers; 100,000 open conversations assigned across
the team (about 100 each) with one assignment-history row each; then new unassigned
conversations, half from customers with an earlier agent.

Timed, per conversation, on a warm process (the team snapshot built, as in a running
worker):
- ``decision``: a write session opened (SQLite: ``BEGIN IMMEDIATE``), one statement
  (``routing.assignment.lock_for_routing``) reading and locking the conversation with its
  customer, the customer's previous agent (assignment history) and whether it waits in
  the queue, the team's version when due (every 1 s), and the policy's choice from the
  snapshot (cached shift windows and loads); rolled back.
- ``route_without_commit``: the ``routing.route`` job's whole body for the same
  conversation (``route_conversation``): the above, plus the customer's programs (topic
  tags), the confirm on the chosen member's row (one ``UPDATE ... RETURNING`` with the
  exact open count, which also stamps ``last_assigned_at``), the history INSERT, the
  ``conversation.assigned`` event and the conversation UPDATE (the queue-wait DELETE only
  when it waited); ``route_with_commit`` adds the COMMIT.

Reported on their own: building the snapshot cold, refreshing the loads (one GROUP BY over
the 100,000 open conversations, at most every 30 s per process), the pure policy over
1,000 members, CPU time per conversation, and the batch path (``drain_queue`` ->
``routing.batch.assign_batch``, 50 per transaction) on 2,000 queued conversations.

Target (issue): p99 < 2 ms per decision.

    .venv/bin/python bench/routing.py                 # SQLite and PostgreSQL
    .venv/bin/python bench/routing.py --db sqlite --decisions 500
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness as h

sys.path.insert(0, str(h.ROOT))

TARGET_P99_MS = 2.0
MEMBERS = 1_000
OPEN = 100_000
CUSTOMERS = 50_000
ZONES = (
    "Asia/Tokyo",
    "Asia/Kuala_Lumpur",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Australia/Sydney",
)
LANGUAGES = ("en", "es", "pt", "fr", "de", "ja", "ru", "ms")
TAGS = ("billing", "technical", "onboarding", "account", "shipping")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A Wednesday, 14:00 UTC: Europe and the Americas' east at work, Asia going home.
NOW = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)
DRAINED = 2000  # queued conversations the batch path assigns after the timed decisions


def _configure(url: str) -> None:
    os.environ["HELIOGRAPH_DATABASE_URL"] = url
    from heliograph import db as db_module
    from heliograph.settings import reset_settings

    reset_settings()
    db_module._db = None


async def _populate(db: Any, decisions: int, rng: random.Random) -> list[int]:
    """Members, customers, open load and history; returns the conversations to route."""
    from sqlalchemy import insert, select

    from crm_core.models import Customer
    from inbox.models import Conversation
    from routing.models import Assignment, TeamMember

    now = NOW - timedelta(days=1)
    members = []
    for n in range(MEMBERS):
        always = n % 5 == 0
        hours = [["00:00", "24:00"]] if always else [["09:00", "17:00"]]
        days = WEEKDAYS if always else WEEKDAYS[:5]
        members.append(
            {
                "name": f"Member {n}",
                "email": f"member{n}@bench.example",
                "role": "agent",
                "timezone": ZONES[n % len(ZONES)],
                "weekly_hours": {d: hours for d in days},
                "exceptions": [],
                "languages": rng.sample(LANGUAGES, rng.randint(1, 3)),
                "expertise": rng.sample(TAGS, rng.randint(1, 2)),
                "capacity": 150,
                "availability": "online" if rng.random() < 0.9 else "away",
                "active": True,
                "availability_auto": False,
                "created_at": now,
                "updated_at": now,
                "last_assigned_at": now - timedelta(minutes=rng.randint(0, 600)),
            }
        )
    customers = [
        {
            "display_name": f"Customer {n}",
            "search_name": f"customer {n}",
            "language": rng.choice(LANGUAGES),
            "journey_stage": "engagement",
            "vip": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(CUSTOMERS)
    ]
    async with db.session() as session:
        await session.execute(insert(TeamMember), members)
        await session.execute(insert(Customer), customers)
        member_ids = list((await session.execute(select(TeamMember.id))).scalars())
        customer_ids = list((await session.execute(select(Customer.id))).scalars())
        await session.commit()
    for start in range(0, OPEN, 10_000):
        rows = []
        for n in range(start, start + 10_000):
            rows.append(
                {
                    "customer_id": customer_ids[n % CUSTOMERS],
                    "channel": "api",
                    "thread_key": f"t{n}",
                    "status": "open",
                    "priority": "normal",
                    "assignee_id": member_ids[n % MEMBERS],
                    "assigned_at": now,
                    "topic_tags": [rng.choice(TAGS)],
                    "translation_enabled": True,
                    "last_message_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        async with db.session() as session:
            await session.execute(insert(Conversation), rows)
            history = (
                await session.execute(
                    select(Conversation.id, Conversation.customer_id, Conversation.assignee_id)
                    .where(Conversation.id > start)
                    .order_by(Conversation.id)
                    .limit(10_000)
                )
            ).all()
            await session.execute(
                insert(Assignment),
                [
                    {
                        "conversation_id": cid,
                        "customer_id": cust,
                        "member_id": mid,
                        "kind": "policy",
                        "reason": "bench setup",
                        "at": now,
                    }
                    for cid, cust, mid in history
                ],
            )
            await session.commit()
    async with db.session() as session:
        # Half from customers with history (ids up to OPEN/2 cover every customer), half new.
        new_customers = [
            {**customers[0], "display_name": f"New {n}", "search_name": f"new {n}"}
            for n in range(decisions // 2)
        ]
        await session.execute(insert(Customer), new_customers)
        fresh = list(
            (
                await session.execute(
                    select(Customer.id).order_by(Customer.id.desc()).limit(decisions // 2)  # type: ignore[union-attr]
                )
            ).scalars()
        )
        targets = [rng.choice(customer_ids) for _ in range(decisions - len(fresh))] + fresh
        rng.shuffle(targets)
        await session.execute(
            insert(Conversation),
            [
                {
                    "customer_id": cust,
                    "channel": "api",
                    "thread_key": f"new{n}",
                    "status": "open",
                    "priority": "normal",
                    "language": rng.choice(LANGUAGES),
                    "topic_tags": [rng.choice(TAGS)],
                    "translation_enabled": True,
                    "waiting_since": NOW,
                    "last_message_at": NOW,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for n, cust in enumerate(targets)
            ],
        )
        ids = list(
            (
                await session.execute(
                    select(Conversation.id)
                    .where(Conversation.assignee_id.is_(None))  # type: ignore[union-attr]
                    .order_by(Conversation.id)
                )
            ).scalars()
        )
        await session.commit()
    return ids


async def _measure(url: str, decisions: int, seed: int) -> dict[str, Any]:
    _configure(url)
    from service.components import load_components

    load_components()
    from heliograph.db import get_db
    from heliograph.migrate import upgrade_async
    from routing import snapshot as snapshot_module
    from routing.assignment import lock_for_routing, wanted_for
    from routing.policy import PolicyConfig, Wanted, choose
    from routing.queue import drain_queue, route_conversation

    await upgrade_async(url)
    db = get_db()
    rng = random.Random(seed)
    started = time.perf_counter()
    targets = await _populate(db, decisions + DRAINED, rng)
    targets, queued = targets[:decisions], targets[decisions:]
    setup_s = time.perf_counter() - started
    config = PolicyConfig.from_settings()

    snapshot_module.invalidate()
    async with db.read_session() as session:
        t0 = time.perf_counter()
        snap = await snapshot_module.team_snapshot(session, config)
        cold_ms = (time.perf_counter() - t0) * 1000
        refresh = []
        for _ in range(5):
            t0 = time.perf_counter()
            await snapshot_module.team_snapshot(session, config, refresh_loads=True)
            refresh.append((time.perf_counter() - t0) * 1000)
    on_duty = len(snap.on_duty(NOW))

    pure = []
    members = list(snap.members.values())
    for _ in range(2000):
        wanted = Wanted.build("api", rng.choice(LANGUAGES), [rng.choice(TAGS)])
        t0 = time.perf_counter()
        choose(members, wanted, NOW, snap.load, config)
        pure.append((time.perf_counter() - t0) * 1000)

    gc.collect()  # the setup's garbage is not the decisions' to pay for
    decision, in_tx, with_commit, assigned = [], [], [], 0
    cpu_decision = cpu_route = 0.0
    refreshes_before = snap.loads_at
    for conversation_id in targets:
        # 1. The decision alone, rolled back: what the policy needs to read and lock.
        c0, t0 = time.process_time(), time.perf_counter()
        async with db.session() as session:
            locked = await lock_for_routing(session, conversation_id)
            current_snap = await snapshot_module.team_snapshot(session, config)
            wanted = await wanted_for(session, locked.conversation, locked=locked)
            current_snap.choose(wanted, NOW, config)
            decision.append((time.perf_counter() - t0) * 1000)
            await session.rollback()
        cpu_decision += time.process_time() - c0
        # 2. The routing job's whole body for the same conversation, written and committed.
        c0, t0 = time.process_time(), time.perf_counter()
        async with db.session() as session:
            routed = await route_conversation(session, conversation_id, now=NOW, config=config)
            t1 = time.perf_counter()
            await session.commit()
        t2 = time.perf_counter()
        cpu_route += time.process_time() - c0
        in_tx.append((t1 - t0) * 1000)
        with_commit.append((t2 - t0) * 1000)
        assigned += routed is not None and routed.member_id is not None
    current = snapshot_module._snapshots[str(db.engine.url)]
    loads_refreshed = int(current.loads_at != refreshes_before)

    # The batch path (queue drain now; handoff's shift change later): the rest, queued.
    gc.collect()
    t0 = time.perf_counter()
    drained = await drain_queue(db, now=NOW, limit=len(queued))
    drain_s = time.perf_counter() - t0
    await db.dispose()
    return {
        "setup_s": round(setup_s, 1),
        "members": MEMBERS,
        "open_conversations": OPEN,
        "members_on_shift_at_now": on_duty,
        "decisions": len(targets),
        "assigned": assigned,
        "decision": h.summarize_ms(decision),
        "route_without_commit": h.summarize_ms(in_tx),
        "route_with_commit": h.summarize_ms(with_commit),
        "cpu_ms_per_decision": round(cpu_decision / len(targets) * 1000, 3),
        "cpu_ms_per_route_with_commit": round(cpu_route / len(targets) * 1000, 3),
        "pure_policy_1000_members": h.summarize_ms(pure),
        "snapshot_cold_build_ms": round(cold_ms, 1),
        "loads_refresh_group_by": h.summarize_ms(refresh),
        "loads_refreshes_during_timed_loop": loads_refreshed,
        "drain": {
            "queued": len(queued),
            "assigned": drained,
            "seconds": round(drain_s, 3),
            "ms_per_conversation": round(drain_s / max(drained, 1) * 1000, 3),
            "batch_size": 50,
        },
    }


HANDOFF_CONVERSATIONS = 5_000
# A Wednesday, 09:01 UTC: Tokyo's day shift ended at 09:00 UTC (18:00 local), London's
# began at 08:00 UTC (09:00 BST).
HANDOFF_NOW = datetime(2026, 6, 10, 9, 1, tzinfo=UTC)


async def _handoff_measure(url: str) -> dict[str, Any]:
    """A shift change end to end: 100 Tokyo agents leave with 50 open conversations each
    (two messages and a note apiece); ``shift_end_pass`` hands all 5,000 to 100 London
    agents (history, context packages, Handoff rows, events) in one transaction."""
    _configure(url)
    from service.components import load_components

    load_components()
    from sqlalchemy import func, insert, select

    from crm_core.models import Customer
    from handoff.models import Handoff
    from handoff.service import shift_end_pass
    from heliograph.db import get_db
    from heliograph.migrate import upgrade_async
    from inbox.models import Conversation, Message, Note
    from routing import snapshot as snapshot_module
    from routing.models import TeamMember

    await upgrade_async(url)
    db = get_db()
    then = HANDOFF_NOW - timedelta(hours=2)
    members = [
        {
            "name": f"{zone.split('/')[1]} {n}",
            "email": f"{zone.split('/')[1].lower()}{n}@bench.example",
            "role": "agent",
            "timezone": zone,
            "weekly_hours": {d: [["09:00", "18:00"]] for d in WEEKDAYS[:5]},
            "exceptions": [],
            "languages": ["en"],
            "expertise": [],
            "capacity": 150,
            "availability": "online",
            "active": True,
            "availability_auto": False,
            "created_at": then,
            "updated_at": then,
        }
        for zone in ("Asia/Tokyo", "Europe/London")
        for n in range(100)
    ]
    t0 = time.perf_counter()
    async with db.session() as session:
        await session.execute(insert(TeamMember), members)
        leaving = list(
            (
                await session.execute(
                    select(TeamMember.id).where(TeamMember.timezone == "Asia/Tokyo")
                )
            ).scalars()
        )
        await session.execute(
            insert(Customer),
            [
                {
                    "display_name": f"Customer {n}",
                    "search_name": f"customer {n}",
                    "language": "en",
                    "timezone": "America/Sao_Paulo",
                    "journey_stage": "engagement",
                    "vip": False,
                    "created_at": then,
                    "updated_at": then,
                }
                for n in range(HANDOFF_CONVERSATIONS)
            ],
        )
        customer_ids = list((await session.execute(select(Customer.id))).scalars())
        await session.execute(
            insert(Conversation),
            [
                {
                    "customer_id": cust,
                    "channel": "api",
                    "thread_key": f"h{n}",
                    "status": "open",
                    "priority": "normal",
                    "language": "en",
                    "assignee_id": leaving[n % len(leaving)],
                    "assigned_at": then,
                    "topic_tags": [],
                    "translation_enabled": True,
                    "last_message_at": then,
                    "created_at": then,
                    "updated_at": then,
                }
                for n, cust in enumerate(customer_ids)
            ],
        )
        conversations = (
            await session.execute(
                select(Conversation.id, Conversation.customer_id, Conversation.assignee_id)
            )
        ).all()
        messages = []
        for cid, cust, mid in conversations:
            base = {"conversation_id": cid, "customer_id": cust, "channel": "api"}
            messages.append(
                {
                    **base,
                    "direction": "in",
                    "author_type": "customer",
                    "text": "Where is it?",
                    "delivery_status": "received",
                    "created_at": then,
                }
            )
            messages.append(
                {
                    **base,
                    "direction": "out",
                    "author_type": "agent",
                    "author_id": mid,
                    "text": "Checking with the carrier.",
                    "delivery_status": "sent",
                    "created_at": then + timedelta(minutes=5),
                }
            )
        await session.execute(insert(Message), messages)
        await session.execute(
            insert(Note),
            [
                {
                    "conversation_id": cid,
                    "author_id": mid,
                    "text": "ticket filed",
                    "created_at": then,
                }
                for cid, _, mid in conversations
            ],
        )
        await session.commit()
    setup_s = time.perf_counter() - t0
    snapshot_module.invalidate()
    gc.collect()
    t0 = time.perf_counter()
    async with db.session() as session:
        handed = await shift_end_pass(session, HANDOFF_NOW)
        await session.commit()
    seconds = time.perf_counter() - t0
    async with db.read_session() as session:
        to_someone = (
            await session.execute(
                select(func.count()).select_from(Handoff).where(Handoff.to_member_id.is_not(None))  # type: ignore[union-attr]
            )
        ).scalar()
    await db.dispose()
    return {
        "setup_s": round(setup_s, 1),
        "conversations": HANDOFF_CONVERSATIONS,
        "leaving_members": len(leaving),
        "handed_off": handed,
        "to_a_member": to_someone,
        "seconds": round(seconds, 3),
        "ms_per_conversation": round(seconds / max(handed, 1) * 1000, 3),
    }


def _handoff(engine: str) -> dict[str, Any] | None:
    if engine == "sqlite":
        path = h.VAR / "routing-handoff.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        h.remove_sqlite(path)
        try:
            return asyncio.run(_handoff_measure(f"sqlite+aiosqlite:///{path}"))
        finally:
            h.remove_sqlite(path)
    if not h.pg_available():
        print("PostgreSQL is not reachable; handoff skipped")
        return None
    name = h.pg_create("routing_handoff")
    try:
        return asyncio.run(_handoff_measure(h.pg_url(name)))
    finally:
        h.pg_drop(name)


def _sqlite(decisions: int, seed: int) -> dict[str, Any]:
    path = h.VAR / "routing.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    h.remove_sqlite(path)
    try:
        return asyncio.run(_measure(f"sqlite+aiosqlite:///{path}", decisions, seed))
    finally:
        h.remove_sqlite(path)


def _postgres(decisions: int, seed: int) -> dict[str, Any] | None:
    if not h.pg_available():
        print("PostgreSQL is not reachable; skipped")
        return None
    name = h.pg_create("routing")
    try:
        return asyncio.run(_measure(h.pg_url(name), decisions, seed))
    finally:
        h.pg_drop(name)


def main() -> None:
    # SQLModel nags on session.execute (we want Core rows here, on purpose).
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--handoff",
        choices=["on", "off", "only"],
        default="on",
        help="The shift-change handoff of 5,000 conversations (only: skip the decisions).",
    )
    args = parser.parse_args()

    results: dict[str, Any] = {
        "benchmark": "routing",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": h.machine_info(),
        "target": {"decision_p99_ms": TARGET_P99_MS},
        "timed": {
            "decision": (
                "write session opened, one statement reading and locking the conversation "
                "with its customer, previous agent and queue wait, team version when due "
                "(1 s), choice from the snapshot; rolled back"
            ),
            "route_without_commit": (
                "the routing job's body: the decision plus the customer's program tags, "
                "confirm on the member's row (UPDATE ... RETURNING exact count), history "
                "INSERT, event INSERT, conversation UPDATE (wait DELETE when it waited)"
            ),
            "route_with_commit": "route_without_commit plus COMMIT",
        },
        "assign": {},
        # A shift change handing off 5,000 conversations (target < 5 s), per engine.
        "handoff": None,
    }
    engines = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.handoff != "off":
        results["handoff"] = {e: r for e in engines if (r := _handoff(e)) is not None}
        for engine, r in results["handoff"].items():
            print(
                f"{engine}: shift change handed off {r['handed_off']}/{r['conversations']} "
                f"({r['to_a_member']} to a member) in {r['seconds']} s = "
                f"{r['ms_per_conversation']} ms per conversation"
            )
    if args.handoff == "only":
        print(f"written to {h.write_results('routing', results, args.out)}")
        return
    if args.db in ("sqlite", "both"):
        results["assign"]["sqlite"] = _sqlite(args.decisions, args.seed)
    if args.db in ("postgres", "both"):
        pg = _postgres(args.decisions, args.seed)
        if pg is not None:
            results["assign"]["postgres"] = pg
            results["machine"]["postgres"] = h.pg_server_version()

    # A busy machine (other processes on its 2 cores) shows in the tail: say how busy.
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for engine, r in results["assign"].items():
        for label in (
            "decision",
            "route_without_commit",
            "route_with_commit",
            "pure_policy_1000_members",
        ):
            s = r[label]
            rows.append(
                (engine, label, s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"])
            )
        s = r["loads_refresh_group_by"]
        rows.append(
            (
                engine,
                "loads_refresh_group_by",
                s["count"],
                s["p50_ms"],
                s["p95_ms"],
                s["p99_ms"],
                s["max_ms"],
            )
        )
    print(
        f"routing: {MEMBERS:,} members, {OPEN:,} open conversations, "
        f"target p99 < {TARGET_P99_MS} ms per decision"
    )
    h.print_table(("db", "what", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"), rows)
    for engine, r in results["assign"].items():
        verdict = "meets" if r["decision"]["p99_ms"] < TARGET_P99_MS else "misses"
        print(
            f"{engine}: {r['assigned']}/{r['decisions']} assigned, {r['members_on_shift_at_now']} "
            f"members on shift; snapshot cold build {r['snapshot_cold_build_ms']} ms; CPU per "
            f"decision {r['cpu_ms_per_decision']} ms, per routed+committed "
            f"{r['cpu_ms_per_route_with_commit']} ms; decision p99 {verdict} the target"
        )
        d = r["drain"]
        print(
            f"{engine}: queue drain (batch path) assigned {d['assigned']}/{d['queued']} in "
            f"{d['seconds']} s = {d['ms_per_conversation']} ms per conversation"
        )
    print(f"written to {h.write_results('routing', results, args.out)}")


if __name__ == "__main__":
    main()
