"""The baseline of bench/ingest.py: a bare FastAPI app that stores the raw body, nothing else.

``POST /ingest`` inserts the request body into one table in one transaction per request
and answers with the new row's id. It runs on the same stack as Heliograph, with the same
settings where they matter: SQLAlchemy async + aiosqlite (WAL, ``synchronous=NORMAL``,
``BEGIN IMMEDIATE``, writers queued on an in-process asyncio lock, as in heliograph/db.py)
or + asyncpg (same pool size), served by uvicorn in one process with the defaults that
``heliograph serve`` uses (uvloop, httptools, no access log).

It does not verify a signature, parse JSON, resolve a customer or thread a conversation:
that work is what the benchmark charges to Heliograph.

    python bench/bare_app.py --database-url sqlite+aiosqlite:///var/bench/bare.db --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from sqlalchemy import Column, Integer, MetaData, Table, Text, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()
raw_inbound = Table(
    "raw_inbound",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", Text, nullable=False),
)


def make_engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=10)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_app(url: str) -> FastAPI:
    engine = make_engine(url)
    # SQLite has one writer; queueing on a lock beats its sleeping busy handler (db.py).
    write_lock: Any = asyncio.Lock() if url.startswith("sqlite") else contextlib.nullcontext()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(title="bare ingest baseline", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/ingest")
    async def ingest(request: Request) -> dict[str, int]:
        body = (await request.body()).decode("utf-8", errors="replace")
        async with write_lock, engine.begin() as conn:
            result = await conn.execute(insert(raw_inbound).values(body=body))
        return {"id": int(result.inserted_primary_key[0])}  # type: ignore[index]

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.database_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
