"""A real PostgreSQL for tests: start the local cluster if it is down, one database per test."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
import uuid

import psycopg2

from tests.utils.schema import migrations_digest

PG_DSN = os.environ.get("HELIOGRAPH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_available: bool | None = None


def _ready() -> bool:
    try:
        psycopg2.connect(PG_DSN, connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def _start_cluster() -> None:
    """The env skill's recipe: pg_ctlcluster with the installed version's 'main' cluster."""
    if shutil.which("pg_ctlcluster") is None:
        return
    for version_dir in sorted(glob.glob("/etc/postgresql/*")):
        version = os.path.basename(version_dir)
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def postgres_available() -> bool:
    global _available
    if _available is None:
        _available = _ready()
        if not _available:
            _start_cluster()
            _available = _ready()
    return _available


def _url(name: str) -> str:
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def _execute(sql: str) -> None:
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database() -> tuple[str, str]:
    """A fresh empty database; returns ``(name, asyncpg URL)``."""
    name = f"hg_test_{uuid.uuid4().hex[:12]}"
    _execute(f'CREATE DATABASE "{name}"')
    return name, _url(name)


_template: str | None = None


def migrated_database() -> tuple[str, str]:
    """A fresh database at the latest schema, cloned from a template migrated once.

    Migrating takes ~0.4 s per database; ``CREATE DATABASE ... TEMPLATE`` takes a few ms.
    The template's name carries a hash of the migration files, so a new migration makes
    a new template. Another run may be cloning or building the same template at the
    same moment ("being accessed by other users"): wait a little and try again.
    """
    global _template
    from heliograph.migrate import upgrade

    if _template is None:
        name = f"hg_tpl_{migrations_digest()}"
        conn = psycopg2.connect(PG_DSN)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            exists = cur.fetchone() is not None
        conn.close()
        if not exists:
            building = f"{name}_build_{uuid.uuid4().hex[:6]}"
            _execute(f'CREATE DATABASE "{building}"')
            upgrade(_url(building))
            try:
                _execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            except psycopg2.errors.DuplicateDatabase:
                drop_database(building)  # another run finished the same template first
        _template = name
    name = f"hg_test_{uuid.uuid4().hex[:12]}"
    for attempt in range(50):
        try:
            _execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"')
            return name, _url(name)
        except psycopg2.errors.ObjectInUse:
            time.sleep(0.1 * (attempt + 1))
    raise RuntimeError(f"template {_template} stayed busy")


def drop_database(name: str) -> None:
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
