"""A real PostgreSQL for tests: start the local cluster if it is down, one database per test."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid

import psycopg2

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


def create_database() -> tuple[str, str]:
    """A fresh empty database; returns ``(name, asyncpg URL)``."""
    name = f"hg_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
