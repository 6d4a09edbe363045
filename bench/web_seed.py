"""The synthetic inbox of bench/web.py, and its fast bulk loaders.

A team of ``MEMBERS`` (member 1 is the one the benchmark signs in as), ``conversations / 2``
customers (each with an email and a phone contact point and an API-channel identity), the
conversations (two per customer; resolved, open, waiting and snoozed, most assigned across
the team, some unanswered past their SLA) and the messages: every ``LONG_EVERY``-th
conversation is a long thread of ``LONG_THREAD`` messages, the others share the rest (2 to
about 18 each), so the totals are exactly as asked. Everything is derived from the sizes
alone, so the benchmark knows ids without reading the database back.

Loading goes around the application on purpose (a million ``accept()`` calls would take
hours), as bench/lookup_data.py does: the schema is Heliograph's own (``heliograph
migrate`` first), then ``executemany`` in large batches into the migrated SQLite file
with the journal off, or ``COPY`` into PostgreSQL. The SQLite file is cached under
var/bench, keyed by the sizes, the generator and the migrations (their contents' hash).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import harness as h
import lookup_data as people

from heliograph.migrate import upgrade

GENERATOR_VERSION = 2
BATCH = 50_000
MEMBERS = 50
LONG_EVERY = 97
LONG_THREAD = 50
START = datetime(2026, 1, 1, tzinfo=UTC)
CHANNELS = ("api", "telegram", "sms", "whatsapp", "email")
PRIORITIES = ("normal", "normal", "normal", "high", "low", "urgent")
TAGS = ([], ["billing"], ["shipping"], ["billing", "refund"], [], ["account"])
LANGS = ("en", "en", "de", "es", "ms", "ru")
IN_TEXTS = (
    "Hi, my order has not arrived yet, can you check?",
    "Hello! How do I change the email on my account?",
    "The payment went through twice, please refund one of them.",
    "Is the course still available in Spanish?",
    "Can I talk to someone about the annual plan?",
    "Thanks, that worked.",
    "ok",
)
OUT_TEXTS = (
    "Thanks for writing! Let me look into it.",
    "I have refunded the second payment; it shows in 3 to 5 days.",
    "You can change it under Settings, Account.",
    "Yes, the Spanish course starts on the 1st.",
    "Anything else I can help with?",
)
# Words the benchmark searches for: one no message holds (so the whole table is read) and
# one many hold.
RARE_WORD = "zyxwvut"
COMMON_WORD = "refund"


def sqlite_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy stores a DateTime in SQLite


def migrations_hash(root: Path = h.ROOT) -> str:
    """A short hash of the migrations of the checkout at ``root`` (their names and contents)."""
    versions = root / "heliograph" / "migrations" / "versions"
    digest = hashlib.sha256()
    for path in sorted(versions.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------- the data


def customers_for(conversations: int) -> int:
    return max(1, conversations // 2)


def thread_lengths(conversations: int, messages: int) -> list[int]:
    """Messages per conversation (index 0 is conversation 1), summing to ``messages``."""
    rng = random.Random(f"web-{conversations}-{messages}")
    longs = [j for j in range(1, conversations + 1) if j % LONG_EVERY == 0]
    rest = conversations - len(longs)
    left = messages - LONG_THREAD * len(longs)
    if rest <= 0 or left < rest:
        raise SystemExit(f"{messages} messages are too few for {conversations} conversations")
    mean = left / rest
    lengths = [
        LONG_THREAD if j % LONG_EVERY == 0 else max(1, round(rng.uniform(2, 2 * mean - 2)))
        for j in range(1, conversations + 1)
    ]
    diff = messages - sum(lengths)
    step = 1 if diff > 0 else -1
    j = 0
    while diff:
        if (j + 1) % LONG_EVERY and (step > 0 or lengths[j] > 1):
            lengths[j] += step
            diff -= step
        j = (j + 1) % conversations
    return lengths


def long_conversations(conversations: int) -> list[int]:
    return [j for j in range(LONG_EVERY, conversations + 1, LONG_EVERY)]


def conversation_fields(j: int, customers: int, length: int) -> dict[str, Any]:
    """Conversation ``j`` (1-based): who, where, its state and its times."""
    customer = (j - 1) % customers + 1
    channel = CHANNELS[j % len(CHANNELS)]
    kind = j % 20
    status = (
        "resolved" if kind < 11 else "open" if kind < 16 else "pending" if kind < 18 else "snoozed"
    )
    # Spread over the team independently of the status (a multiplicative hash of j).
    spread = (j * 2_654_435_761 >> 7) % MEMBERS + 1
    assignee = None if status == "open" and j % 5 == 0 else spread
    created = START + timedelta(minutes=5 * j)
    last = created + timedelta(minutes=3 * length)
    answered = not (status == "open" and j % 3 == 0)
    return {
        "id": j,
        "customer_id": customer,
        "identity_id": customer if channel == "api" else None,
        "channel": channel,
        "thread_key": f"bench-{j}",
        "status": status,
        "priority": PRIORITIES[j % len(PRIORITIES)],
        "assignee_id": assignee,
        "language": LANGS[j % len(LANGS)],
        "topic_tags": TAGS[j % len(TAGS)],
        "subject": None,
        "translation_enabled": False,
        "snoozed_until": last + timedelta(days=400) if status == "snoozed" else None,
        "waiting_since": last if status == "open" else None,
        "first_response_at": created + timedelta(minutes=3) if answered else None,
        "resolved_at": last if status == "resolved" else None,
        "last_message_at": last,
        "created_at": created,
        "updated_at": last,
        "assigned_at": created + timedelta(minutes=1) if assignee else None,
        "language_source": None,
        "unverified_sender": False,
    }


def message_fields(message_id: int, c: dict[str, Any], k: int, answered: bool) -> dict[str, Any]:
    """Message ``k`` (0-based) of conversation ``c``: customer and agent in turn."""
    inbound = k % 2 == 0 or not answered
    texts = IN_TEXTS if inbound else OUT_TEXTS
    return {
        "id": message_id,
        "conversation_id": c["id"],
        "customer_id": c["customer_id"],
        "channel": c["channel"],
        "direction": "in" if inbound else "out",
        "author_type": "customer" if inbound else "agent",
        "author_id": None if inbound else c["assignee_id"],
        "text": texts[(message_id * 31) % len(texts)],
        "original_text": None,
        "original_language": None,
        "provider_message_id": f"bench-{message_id}",
        "external_id": None,
        "delivery_status": "received" if inbound else "delivered",
        "delivery_error": None,
        "sent_at": None,
        "edited_at": None,
        "raw": None,
        "created_at": c["created_at"] + timedelta(minutes=3 * k),
        "translation_status": None,
        "translation_note": None,
    }


def member_fields(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"Agent {i:02d}",
        "email": f"agent{i}@team.example.com",
        "role": "lead" if i == 1 else "agent",
        "timezone": ("Europe/London", "Asia/Kuala_Lumpur", "America/New_York")[i % 3],
        "region": None,
        "weekly_hours": {},
        "exceptions": [],
        "languages": ["en"],
        "expertise": [],
        "capacity": 1000,
        "availability": "online",
        "slack_user_id": None,
        "telegram_chat_id": None,
        "active": True,
        "last_assigned_at": None,
        "created_at": START,
        "updated_at": START,
        "last_active_at": None,
        "availability_auto": False,
        "answers_customers": None,
        "ui_language": None,
        "ui_theme": "system",
        "password_hash": None,
        "session_version": 0,
    }


def customer_fields(
    i: int, place: tuple[str, str, str] | None = None, vip: bool = False
) -> dict[str, Any]:
    """Customer ``i``; ``place`` is its (language, time zone, country), by default one of
    bench/lookup_data.py's."""
    lang, tz, country = place or people.LANGUAGES[i % len(people.LANGUAGES)]
    full = people.name(i)
    return {
        "id": i,
        "display_name": full,
        "search_name": full.lower(),
        "language": lang,
        "timezone": tz,
        "country": country,
        "journey_stage": "discovery",
        "lifetime_value": Decimal(0),
        "vip": vip,
        "attributes": {},
        "merged_into_id": None,
        "created_at": START,
        "updated_at": START,
        "last_seen_at": None,
    }


def contact_fields(i: int) -> Iterator[dict[str, Any]]:
    yield {"id": 2 * i - 1, "customer_id": i, "kind": "email", "value": people.email(i)}
    yield {"id": 2 * i, "customer_id": i, "kind": "phone", "value": people.phone(i)}


def identity_fields(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "customer_id": i,
        "channel": "api",
        "external_id": f"cust-{i}",
        "display_name": people.name(i),
        "opted_out": False,
        "unreachable_reason": None,
        "created_at": START,
        "last_seen_at": None,
    }


def tables(conversations: int, messages: int) -> Iterator[tuple[str, Iterator[dict[str, Any]]]]:
    """(table, its rows) in foreign-key order."""
    customers = customers_for(conversations)
    lengths = thread_lengths(conversations, messages)
    yield "team_member", (member_fields(i) for i in range(1, MEMBERS + 1))
    yield "customer", (customer_fields(i) for i in range(1, customers + 1))
    yield (
        "contact_point",
        (row | {"created_at": START} for i in range(1, customers + 1) for row in contact_fields(i)),
    )
    yield "identity", (identity_fields(i) for i in range(1, customers + 1))
    yield (
        "conversation",
        (conversation_fields(j, customers, lengths[j - 1]) for j in range(1, conversations + 1)),
    )

    def all_messages() -> Iterator[dict[str, Any]]:
        message_id = 0
        for j in range(1, conversations + 1):
            c = conversation_fields(j, customers, lengths[j - 1])
            answered = c["first_response_at"] is not None
            for k in range(lengths[j - 1]):
                message_id += 1
                yield message_fields(message_id, c, k, answered)

    yield "message", all_messages()


def batches(rows: Iterator[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    while batch := [row for _, row in zip(range(size), rows, strict=False)]:
        yield batch


# ---------------------------------------------------------------- SQLite


def sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_time(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def sqlite_path(conversations: int, messages: int) -> Path:
    return h.VAR / f"web-{conversations}c-{messages}m-{migrations_hash()}.db"


def build_sqlite(conversations: int, messages: int, rebuild: bool = False) -> dict[str, Any]:
    """The cached, seeded SQLite file for these sizes (built when missing)."""
    path = sqlite_path(conversations, messages)
    wanted = {"generator": GENERATOR_VERSION, "conversations": conversations, "messages": messages}
    for old in h.VAR.glob(f"web-{conversations}c-{messages}m-*.db"):
        if old != path:  # built for other migrations: never valid again
            h.remove_sqlite(old)
            old.with_suffix(".json").unlink(missing_ok=True)

    def fill(conn: sqlite3.Connection) -> dict[str, Any]:
        seconds: dict[str, float] = {}
        for table, rows in tables(conversations, messages):
            t0 = time.perf_counter()
            sql = None
            for batch in batches(rows):
                if sql is None:
                    columns = list(batch[0])
                    sql = (
                        f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})"
                    )
                conn.executemany(sql, [tuple(map(sqlite_value, r.values())) for r in batch])
            seconds[table] = round(time.perf_counter() - t0, 1)
            print(f"    {table}: loaded in {seconds[table]:.1f} s", flush=True)
        return {"tables_s": seconds}

    return h.seeded_sqlite(path, wanted, upgrade, fill, rebuild=rebuild, analyze=True)


def working_copy(cached: Path, name: str) -> Path:
    """A copy of the cached file to run against (the run writes to it; the cache stays)."""
    target = h.VAR / name
    h.remove_sqlite(target)
    with cached.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(1 << 24):
            dst.write(chunk)
    return target


# ---------------------------------------------------------------- PostgreSQL


def pg_value(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


async def copy_table(
    conn: Any,
    table: str,
    rows: Iterator[dict[str, Any]],
    have: set[str] | None = None,
    size: int = BATCH,
) -> float:
    """``COPY`` the rows into ``table`` over the asyncpg connection (only the columns in
    ``have`` when given), then set its id sequence past them; returns the seconds taken."""
    t0 = time.perf_counter()
    for batch in batches(rows, size):
        columns = [k for k in batch[0] if have is None or k in have]
        records = [tuple(pg_value(r[k]) for k in columns) for r in batch]
        await conn.copy_records_to_table(table, records=records, columns=columns)
    await conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
    )
    seconds = round(time.perf_counter() - t0, 1)
    print(f"    {table}: copied in {seconds:.1f} s", flush=True)
    return seconds


async def _copy_pg(dsn: str, conversations: int, messages: int) -> dict[str, float]:
    import asyncpg  # type: ignore[import-untyped]

    seconds: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for table, rows in tables(conversations, messages):
            seconds[table] = await copy_table(conn, table, rows)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return seconds


def build_pg(conversations: int, messages: int, dsn: str) -> dict[str, Any]:
    """A fresh database ``hg_bench_web_<random>``, migrated and seeded; the caller drops it."""
    started = time.perf_counter()
    name = h.pg_create("web", dsn)
    url = h.pg_url(name, dsn)
    upgrade(url)
    seconds = asyncio.run(_copy_pg(h.pg_url(name, dsn, "postgresql"), conversations, messages))
    return {
        "database": name,
        "url": url,
        "cached": False,
        "conversations": conversations,
        "messages": messages,
        "build_seconds": round(time.perf_counter() - started, 1),
        "tables_s": seconds,
    }
