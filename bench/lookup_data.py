"""The synthetic customer base of bench/lookup.py, and its fast bulk loaders.

Customer ``i`` (1-based, also its id) has a name, one email contact point, one E.164 phone
contact point and one Telegram identity, all derived from ``i`` alone, so the benchmark
can pick random existing customers without reading the database back.

Loading goes around the application on purpose (a million ``accept()`` calls would take
hours): ``executemany`` in large batches into a migrated SQLite file with the journal off,
or ``COPY`` into PostgreSQL. The schema is Heliograph's own (``heliograph.migrate``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import harness as h

from heliograph.migrate import upgrade

GENERATOR_VERSION = 1
BATCH = 50_000
FIRST = (
    "Ana Wei Olga Tom Aisha Raj Mia Ivan Siti Lucas Nora Kenji Fatima Omar Lena Diego "
    "Priya Sven Chloe Ahmad Yuki Elena Marco Zara Hugo Leila Arjun Ines Pavel Amara Jonas"
).split()
LAST = (
    "Smith Tan Ivanova Garcia Khan Muller Rossi Lee Novak Silva Kowalski Ahmed Sato Haddad "
    "Jensen Ortiz Nair Petrov Dubois Lim Costa Berg Rahman Weber Moreau Okafor Park Fischer "
    "Romero Abdullah Larsen Volkova Chen Nguyen Mendes Hassan Bauer"
).split()
DOMAINS = ("example.com", "mail.example.org", "example.co.uk", "example.de", "example.my")
LANGUAGES = (
    ("en", "Europe/London", "GB"),
    ("de", "Europe/Berlin", "DE"),
    ("ms", "Asia/Kuala_Lumpur", "MY"),
    ("ru", "Europe/Moscow", "RU"),
    ("en", "America/New_York", "US"),
)
CREATED = datetime(2025, 1, 1, tzinfo=UTC)
SQLITE_TIME = "2025-01-01 00:00:00.000000"  # how SQLAlchemy stores a DateTime in SQLite


def name(i: int) -> str:
    return f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}"


def email(i: int) -> str:
    first, last = name(i).lower().split()
    return f"{first}.{last}.{i}@{DOMAINS[i % len(DOMAINS)]}"


def phone(i: int) -> str:
    """A distinct, possible E.164 number: US, UK, DE, MY and RU mobiles in turn."""
    j = i // 5
    country = i % 5
    if country == 0:
        return f"+1646{2_000_000 + j:07d}"
    if country == 1:
        return f"+447{400_000_000 + j:09d}"
    if country == 2:
        return f"+49151{10_000_000 + j:08d}"
    if country == 3:
        return f"+6012{1_000_000 + j:07d}"
    return f"+79{161_000_000 + j:09d}"


def telegram_id(i: int) -> str:
    return str(5_000_000_000 + i)


def _rows(first: int, last: int, make: Callable[[int], list[tuple[Any, ...]]]) -> Iterator[Any]:
    for i in range(first, last + 1):
        yield from make(i)


def _sqlite_customer(i: int) -> list[tuple[Any, ...]]:
    lang, tz, country = LANGUAGES[i % len(LANGUAGES)]
    full = name(i)
    row = (i, full, full.lower(), lang, tz, country, "discovery", 0, 0, "{}", None)
    return [(*row, SQLITE_TIME, SQLITE_TIME, None)]


def _sqlite_contacts(i: int) -> list[tuple[Any, ...]]:
    return [
        (2 * i - 1, i, "email", email(i), SQLITE_TIME),
        (2 * i, i, "phone", phone(i), SQLITE_TIME),
    ]


def _sqlite_identity(i: int) -> list[tuple[Any, ...]]:
    return [(i, i, "telegram", telegram_id(i), name(i), 0, None, SQLITE_TIME, None)]


INSERTS = {
    "customer": (
        "INSERT INTO customer (id, display_name, search_name, language, timezone, country, "
        "journey_stage, lifetime_value, vip, attributes, merged_into_id, created_at, "
        "updated_at, last_seen_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        _sqlite_customer,
    ),
    "contact_point": (
        "INSERT INTO contact_point (id, customer_id, kind, value, created_at) VALUES (?,?,?,?,?)",
        _sqlite_contacts,
    ),
    "identity": (
        "INSERT INTO identity (id, customer_id, channel, external_id, display_name, opted_out, "
        "unreachable_reason, created_at, last_seen_at) VALUES (?,?,?,?,?,?,?,?,?)",
        _sqlite_identity,
    ),
}


def label(customers: int) -> str:
    return f"{customers // 1_000_000}m" if customers % 1_000_000 == 0 else str(customers)


def build_sqlite(customers: int, rebuild: bool = False) -> dict[str, Any]:
    """The cached SQLite file for ``customers`` (built when missing); returns build facts.
    New migrations apply to the cache too."""

    def fill(conn: sqlite3.Connection) -> dict[str, Any]:
        started = time.perf_counter()
        for table, (sql, make) in INSERTS.items():
            rows = _rows(1, customers, make)
            while batch := [row for _, row in zip(range(BATCH), rows, strict=False)]:
                conn.executemany(sql, batch)
            print(f"    {table}: loaded ({time.perf_counter() - started:.0f} s)", flush=True)
        return {}

    path = h.VAR / f"lookup-{label(customers)}.db"
    wanted = {"generator": GENERATOR_VERSION, "customers": customers}
    return h.seeded_sqlite(path, wanted, upgrade, fill, rebuild=rebuild, migrate_cached=True)


# ---------------------------------------------------------------- PostgreSQL


def _pg_records(table: str, first: int, last: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in range(first, last + 1):
        if table == "customer":
            lang, tz, country = LANGUAGES[i % len(LANGUAGES)]
            full = name(i)
            row = (i, full, full.lower(), lang, tz, country, "discovery", Decimal(0), False)
            out.append((*row, "{}", None, CREATED, CREATED, None))
        elif table == "contact_point":
            out.append((2 * i - 1, i, "email", email(i), CREATED))
            out.append((2 * i, i, "phone", phone(i), CREATED))
        else:
            out.append((i, i, "telegram", telegram_id(i), name(i), False, None, CREATED, None))
    return out


COLUMNS = {
    table: sql.split("(", 1)[1].split(")", 1)[0].replace(" ", "").split(",")
    for table, (sql, _) in INSERTS.items()
}


async def _copy_pg(dsn: str, customers: int) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        for table in INSERTS:
            for first in range(1, customers + 1, BATCH):
                last = min(customers, first + BATCH - 1)
                records = _pg_records(table, first, last)
                await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
            print(f"    {table}: copied", flush=True)
        await conn.execute("ANALYZE customer; ANALYZE contact_point; ANALYZE identity")
    finally:
        await conn.close()


def build_pg(customers: int, dsn: str, rebuild: bool = False) -> dict[str, Any]:
    """Database ``hg_bench_lookup_<size>``, reused when a kept one of this version exists."""
    name_ = f"hg_bench_lookup_{label(customers)}"
    marker = f"heliograph bench lookup generator={GENERATOR_VERSION} customers={customers}"
    url = h.pg_url(name_, dsn)
    if h.pg_database_exists(name_, dsn):
        if not rebuild and _pg_comment(name_, dsn) == marker:
            upgrade(url)
            return {"database": name_, "cached": True, "customers": customers}
        h.pg_drop(name_, dsn)
    started = time.perf_counter()
    h.pg_create("lookup", dsn, name=name_)
    upgrade(url)
    asyncio.run(_copy_pg(h.pg_url(name_, dsn, "postgresql"), customers))
    h.pg_admin(dsn, f"COMMENT ON DATABASE \"{name_}\" IS '{marker}'")
    seconds = round(time.perf_counter() - started, 1)
    return {"database": name_, "cached": False, "customers": customers, "build_seconds": seconds}


def _pg_comment(name_: str, dsn: str) -> str | None:
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (name_,),
            )
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()
