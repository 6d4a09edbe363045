"""The world of bench/pipeline.py (issue #17), and its bulk loaders.

A team of ``members`` in five regions (Los Angeles, São Paulo, Berlin, Kolkata, Singapore),
each with a week of shifts in their own time zone (8 hours a day, five days out of seven,
the start hour staggered so that about a quarter of the team is on shift at any moment),
the languages their region speaks, a role, a Slack user id and a capacity above the load
they are given; one open conversation per customer (``conversations`` of them), every one
assigned, answered (a customer message, then the agent's reply) and already threaded in
the agent's Slack DM (a ``slack_agent_thread`` row whose parent ``ts`` the sandbox's fake
Slack accepts), so that a new customer message is mirrored to Slack at once; customers in
many time zones and languages on the API channel (40%), WhatsApp (25%), Telegram (15%)
and SMS (20%), each with the identity that channel's webhook names them by; and an API
token for every member (``token(i)``), for the agents' replies.

Everything is derived from the two sizes, so the benchmark knows ids, channels, senders
and tokens without reading the database back. Loading goes around the application on
purpose, as bench/web_seed.py does: the schema is the target checkout's own (its
``heliograph migrate``), then ``executemany`` into SQLite with the journal off (the file is
cached under var/bench, keyed by the sizes, the generator and the checkout's migrations) or
``COPY`` into PostgreSQL. Only the columns the migrated table has are written, so the same
world loads into an older checkout's schema.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness as h
import lookup_data as people
import web_seed as seed
from web_seed import migrations_hash, sqlite_value

GENERATOR_VERSION = 2
BATCH = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)
SEEDED_AT = datetime(2026, 1, 2, tzinfo=UTC)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# (region, its time zone, the languages its members speak: the first is everyone's)
REGIONS = (
    ("americas-west", "America/Los_Angeles", ("en", "es")),
    ("americas-south", "America/Sao_Paulo", ("pt", "es", "en")),
    ("emea", "Europe/Berlin", ("en", "de", "fr", "ru", "tr", "it")),
    ("india", "Asia/Kolkata", ("en", "hi")),
    ("apac", "Asia/Singapore", ("en", "ms", "ja")),
)
# Customers: (language, time zone, country), many of each. Their languages are those the
# sandbox's LibreTranslate fake knows (sandbox/libretranslate.py); a language it refuses
# would leave the messages' translations retrying and the replies waiting for them.
CUSTOMER_PLACES = (
    ("en", "America/New_York", "US"),
    ("en", "Europe/London", "GB"),
    ("es", "America/Mexico_City", "MX"),
    ("pt", "America/Sao_Paulo", "BR"),
    ("de", "Europe/Berlin", "DE"),
    ("fr", "Europe/Paris", "FR"),
    ("ru", "Europe/Moscow", "RU"),
    ("tr", "Europe/Istanbul", "TR"),
    ("it", "Europe/Rome", "IT"),
    ("en", "Asia/Kolkata", "IN"),
    ("ms", "Asia/Kuala_Lumpur", "MY"),
    ("ms", "Asia/Jakarta", "ID"),
    ("en", "Asia/Singapore", "SG"),
    ("ja", "Asia/Tokyo", "JP"),
    ("en", "Australia/Sydney", "AU"),
    ("es", "America/Bogota", "CO"),
    ("en", "America/Los_Angeles", "US"),
)
# The channel of customer i: i % 20 in these ranges.
CHANNEL_SHARES = (("api", 8), ("whatsapp", 5), ("telegram", 3), ("sms", 4))
SLACK_BOT_USER = "U0HELIOBOT"


def channel_of(i: int) -> str:
    k = i % 20
    for channel, share in CHANNEL_SHARES:
        if k < share:
            return channel
        k -= share
    raise AssertionError(k)


def place_of(i: int) -> tuple[str, str, str]:
    return CUSTOMER_PLACES[(i * 7) % len(CUSTOMER_PLACES)]


def api_sender(i: int) -> str:
    return f"cust-{i}"


def telegram_chat(i: int) -> int:
    return 5_000_000_000 + i


def phone(i: int) -> str:
    return people.phone(i)


def external_id(i: int) -> str:
    channel = channel_of(i)
    if channel == "api":
        return api_sender(i)
    if channel == "telegram":
        return str(telegram_chat(i))
    return phone(i)


def slack_user(i: int) -> str:
    return f"U{i:07d}B"


def slack_dm(i: int) -> str:
    return "D" + slack_user(i)[1:]  # what the fake's conversations.open answers


def token(i: int) -> str:
    return f"hgbench-{i:06d}-" + hashlib.sha256(f"pipeline-token-{i}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------- the team


def member_region(i: int) -> tuple[str, str, tuple[str, ...]]:
    return REGIONS[i % len(REGIONS)]


def member_role(i: int) -> str:
    if i == 1:
        return "admin"
    return "lead" if i % 50 == 0 else "agent"


def weekly_hours(i: int) -> dict[str, list[list[str]]]:
    """Five days of eight hours in the member's own zone; two days off in a row."""
    start = (i * 5) % 17  # 00:00 .. 16:00, so a shift never crosses midnight
    off = {i % 7, (i + 1) % 7}
    hours = [[f"{start:02d}:00", f"{start + 8:02d}:00"]]
    if i % 9 == 0 and start <= 12:  # a split shift: four hours, a break, four hours
        hours = [
            [f"{start:02d}:00", f"{start + 4:02d}:00"],
            [f"{start + 5:02d}:00", f"{start + 9:02d}:00"],
        ]
    return {day: hours for n, day in enumerate(WEEKDAYS) if n not in off}


def member_languages(i: int) -> list[str]:
    langs = member_region(i)[2]
    # Everyone speaks the region's first language; most one or two of the others.
    return [langs[0], *[x for n, x in enumerate(langs[1:]) if (i + n) % 3 != 0]]


@dataclass(frozen=True)
class World:
    members: int
    conversations: int

    @property
    def customers(self) -> int:
        return self.conversations  # one open conversation per customer

    def answerers(self) -> list[int]:
        """Members the router may give conversations to (agents; leads answer too)."""
        return [i for i in range(1, self.members + 1) if member_role(i) != "admin"]

    def assignee(self, j: int) -> int:
        answerers = self._answerers
        return answerers[(j * 2_654_435_761 >> 7) % len(answerers)]

    @property
    def _answerers(self) -> list[int]:
        cached = self.__dict__.get("_answerers_cache")
        if cached is None:
            cached = self.answerers()
            object.__setattr__(self, "_answerers_cache", cached)
        return cached

    def loads(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for j in range(1, self.conversations + 1):
            m = self.assignee(j)
            counts[m] = counts.get(m, 0) + 1
        return counts

    def key(self) -> dict[str, Any]:
        return {
            "generator": GENERATOR_VERSION,
            "members": self.members,
            "conversations": self.conversations,
        }


def member_fields(i: int, load: int) -> dict[str, Any]:
    region, tz, _ = member_region(i)
    return {
        "id": i,
        "name": f"{people.FIRST[i % len(people.FIRST)]} {people.LAST[i * 3 % len(people.LAST)]}",
        "email": f"member{i}@team.example.com",
        "role": member_role(i),
        "timezone": tz,
        "region": region,
        "weekly_hours": weekly_hours(i),
        "exceptions": [],
        "languages": member_languages(i),
        "expertise": [("billing", "shipping", "account", "courses")[i % 4]],
        # Room above the load they hold: 10 to 40 more conversations.
        "capacity": load + 10 + 10 * (i % 4),
        "availability": "online",
        "slack_user_id": slack_user(i),
        "telegram_chat_id": None,
        "active": True,
        "answers_customers": None,
        "last_assigned_at": None,
        "last_active_at": None,
        "availability_auto": False,
        "ui_language": None,
        "ui_theme": "system",
        "password_hash": None,
        "session_version": 0,
        "created_at": START,
        "updated_at": START,
    }


def customer_fields(i: int) -> dict[str, Any]:
    return seed.customer_fields(i, place_of(i), vip=i % 97 == 0)


def contact_fields(i: int) -> Iterator[dict[str, Any]]:
    yield {
        "id": 2 * i - 1,
        "customer_id": i,
        "kind": "email",
        "value": people.email(i),
        "created_at": START,
    }
    yield {"id": 2 * i, "customer_id": i, "kind": "phone", "value": phone(i), "created_at": START}


def identity_fields(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "customer_id": i,
        "channel": channel_of(i),
        "external_id": external_id(i),
        "display_name": people.name(i),
        "opted_out": False,
        "unreachable_reason": None,
        "created_at": START,
        "last_seen_at": SEEDED_AT,
    }


def conversation_fields(world: World, j: int) -> dict[str, Any]:
    created = SEEDED_AT - timedelta(hours=2, seconds=j % 3600)
    lang = place_of(j)[0]
    return {
        "id": j,
        "customer_id": j,
        "identity_id": j,
        "channel": channel_of(j),
        "thread_key": "",
        "status": "open",
        "priority": ("normal", "normal", "normal", "high", "low")[j % 5],
        "assignee_id": world.assignee(j),
        "assigned_at": created + timedelta(seconds=5),
        "language": lang,
        "language_source": "customer",
        "topic_tags": [],
        "subject": None,
        "translation_enabled": True,
        "unverified_sender": False,
        "snoozed_until": None,
        "waiting_since": None,  # the agent answered last: nothing to re-route
        "first_response_at": created + timedelta(minutes=3),
        "resolved_at": None,
        "last_message_at": created + timedelta(minutes=3),
        "created_at": created,
        "updated_at": created + timedelta(minutes=3),
    }


def message_rows(world: World, j: int) -> Iterator[dict[str, Any]]:
    """Conversation j's two messages: the customer's (id 2j-1), the agent's reply (2j)."""
    c = conversation_fields(world, j)
    base = {
        "conversation_id": j,
        "customer_id": j,
        "channel": c["channel"],
        "original_text": None,
        "original_language": None,
        "delivery_error": None,
        "edited_at": None,
        "raw": None,
        "translation_status": "not_needed",
        "translation_note": None,
    }
    yield base | {
        "id": 2 * j - 1,
        "direction": "in",
        "author_type": "customer",
        "author_id": None,
        "text": "Hello, I have a question about my order.",
        "provider_message_id": f"seed-{j}",
        "external_id": None,
        "delivery_status": "received",
        "sent_at": c["created_at"],
        "created_at": c["created_at"],
    }
    yield base | {
        "id": 2 * j,
        "direction": "out",
        "author_type": "agent",
        "author_id": c["assignee_id"],
        "text": "Thanks for writing! Let me look into it.",
        "provider_message_id": None,
        "external_id": f"seed-out-{j}",
        "delivery_status": "delivered",
        "sent_at": c["first_response_at"],
        "created_at": c["first_response_at"],
    }


def thread_fields(world: World, j: int) -> dict[str, Any]:
    m = world.assignee(j)
    return {
        "id": j,
        "conversation_id": j,
        "channel": slack_dm(m),
        "ts": f"{1_767_225_600 + j // 1_000_000}.{j % 1_000_000:06d}",
        "member_id": m,
        "mirrored_to": 2 * j,  # both messages are in the thread already
        "created_at": SEEDED_AT,
        "updated_at": SEEDED_AT,
    }


def token_fields(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "member_id": i,
        "token_hash": hashlib.sha256(token(i).encode()).hexdigest(),
        "label": "bench/pipeline.py",
        "created_at": START,
        "last_used_at": None,
        "expires_at": None,
        "revoked_at": None,
    }


def tables(world: World) -> Iterator[tuple[str, Iterator[dict[str, Any]]]]:
    """(table, its rows) in foreign-key order."""
    loads = world.loads()
    n, c = world.members, world.conversations
    yield "team_member", (member_fields(i, loads.get(i, 0)) for i in range(1, n + 1))
    yield "api_token", (token_fields(i) for i in range(1, n + 1))
    yield "customer", (customer_fields(i) for i in range(1, c + 1))
    yield "contact_point", (row for i in range(1, c + 1) for row in contact_fields(i))
    yield "identity", (identity_fields(i) for i in range(1, c + 1))
    yield "conversation", (conversation_fields(world, j) for j in range(1, c + 1))
    yield "message", (row for j in range(1, c + 1) for row in message_rows(world, j))
    yield "slack_agent_thread", (thread_fields(world, j) for j in range(1, c + 1))


# ---------------------------------------------------------------- SQLite


def sqlite_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def fill_sqlite(conn: sqlite3.Connection, world: World) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    skipped: dict[str, list[str]] = {}
    for table, rows in tables(world):
        t0 = time.perf_counter()
        have = sqlite_columns(conn, table)
        if not have:
            print(f"    {table}: not in this schema, skipped", flush=True)
            continue
        sql, columns = None, []
        for batch in seed.batches(rows, BATCH):
            if sql is None:
                columns = [k for k in batch[0] if k in have]
                skipped[table] = [k for k in batch[0] if k not in have]
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})"
                )
            conn.executemany(sql, [tuple(sqlite_value(r[k]) for k in columns) for r in batch])
        seconds[table] = round(time.perf_counter() - t0, 1)
        print(f"    {table}: loaded in {seconds[table]:.1f} s", flush=True)
    return {"tables_s": seconds, "columns_not_in_schema": {k: v for k, v in skipped.items() if v}}


def build_sqlite(world: World, root: Path, migrate: Any, rebuild: bool = False) -> dict[str, Any]:
    """The cached seeded SQLite file of this world for the checkout at ``root``."""
    tag = migrations_hash(root)
    path = h.VAR / f"pipeline-{world.members}m-{world.conversations}c-{tag}.db"
    return h.seeded_sqlite(
        path,
        world.key() | {"migrations": tag},
        migrate,
        lambda conn: fill_sqlite(conn, world),
        rebuild=rebuild,
        analyze=True,
    )


# ---------------------------------------------------------------- PostgreSQL


async def _copy_pg(dsn: str, world: World) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped]

    seconds: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for table, rows in tables(world):
            have = {
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                    table,
                )
            }
            if not have:
                print(f"    {table}: not in this schema, skipped", flush=True)
                continue
            seconds[table] = await seed.copy_table(conn, table, rows, have, BATCH)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"tables_s": seconds}


def fill_pg(dsn: str, world: World) -> dict[str, Any]:
    return asyncio.run(_copy_pg(dsn, world))


# ---------------------------------------------------------------- at run time


def members_on_shift(world: World, now: datetime) -> list[int]:
    """Members on shift at ``now`` (routing's own schedule code, of this checkout)."""
    from routing.schedule import is_on_shift

    return [i for i in range(1, world.members + 1) if is_on_shift(_member(i), now)]


def _member(i: int) -> Any:
    from routing.models import TeamMember

    return TeamMember(
        **{k: v for k, v in member_fields(i, 0).items() if k in TeamMember.model_fields}
    )


def recent_shift_ends(world: World, now: datetime) -> list[tuple[int, datetime]]:
    """(member, end) of each member's shift that ended in handoff's look-back window: the
    shift-end handoffs a live team would have made already. The run marks them done, so
    the benchmark starts from a settled team instead of a burst of handoffs of the
    seeded conversations; shifts that end during the run are handed off as in life."""
    from handoff.service import last_shift_end

    out = []
    for i in range(1, world.members + 1):
        end = last_shift_end(_member(i), now)
        if end is not None:
            out.append((i, end))
    return out
