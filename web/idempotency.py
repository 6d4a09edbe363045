"""``Idempotency-Key`` for POST routes: a retry after a lost answer gets the first answer
back (same status, same body) and nothing is done twice.

The habits of Stripe's API and the IETF draft "The Idempotency-Key HTTP Header Field"
(https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/):

- A key belongs to the member who sent it (scope ``member:{id}``): two members' keys
  never meet.
- The first request's method, path and body are fingerprinted (SHA-256); the same key
  with another request is refused (422), never answered with the other request's result.
- The record is inserted first, in the request's own transaction, and its answer written
  before the COMMIT. So a crash can never leave a reply without its record (or a record
  without its reply), and concurrent duplicates settle on the unique key (scope, key):
  on PostgreSQL the second INSERT waits for the first transaction and then fails, and
  the loser reads the winner's committed answer; on SQLite writers are serialised
  (``BEGIN IMMEDIATE`` and the write lock), so the second finds the record at once.
  A record seen with no answer yet (``status_code`` 0) is answered 409, as Stripe does.
- Only successes are kept: a request that fails stores nothing (its transaction rolls
  back), so its retry runs again and gets the error of the moment.
- Records expire after ``HELIOGRAPH_IDEMPOTENCY_TTL_HOURS`` (default 24): an expired one
  no longer answers, and the scheduler deletes them hourly
  (``inbox.periodic.purge_idempotency_records``).

A route takes ``idem: IdempotencyDep`` and hands its work to ``idem.run``, which commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph.db import is_unique_violation, utcnow
from heliograph.models import IdempotencyRecord
from heliograph.settings import get_settings
from web.deps import MemberDep

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # Stripe's name for "this is the stored answer"
MAX_KEY = 255


@dataclass(frozen=True)
class Outcome:
    """What a route's work produced: the body to answer (and keep), its status, and the
    customer it concerns (so that erasure finds records that repeat their words)."""

    body: BaseModel
    status_code: int
    customer_id: int | None = None


Work = Callable[[], Awaitable[Outcome]]


class Idempotency:
    def __init__(self, scope: str, key: str | None, fingerprint: str) -> None:
        self.scope, self.key, self.fingerprint = scope, key, fingerprint

    async def run(self, session: AsyncSession, work: Work) -> JSONResponse:
        """``work()`` in ``session``'s transaction, committed here; with a key, at most once."""
        if self.key is None:
            outcome = await work()
            await session.commit()
            return _answer(outcome.status_code, _dump(outcome.body))
        stored = await self._stored(session)
        if stored is not None:
            return stored
        record = IdempotencyRecord(scope=self.scope, key=self.key, fingerprint=self.fingerprint)
        session.add(record)
        try:
            await session.flush()  # takes the key: a concurrent twin waits here, then fails
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            await session.rollback()
            return await self._stored(session) or _in_flight()
        outcome = await work()
        record.status_code, record.response = outcome.status_code, _dump(outcome.body)
        record.customer_id = outcome.customer_id
        await session.commit()
        return _answer(record.status_code, record.response)

    async def _stored(self, session: AsyncSession) -> JSONResponse | None:
        """The answer kept for this key; None when there is none (or it expired)."""
        found = (
            await session.execute(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.scope == self.scope,  # type: ignore[arg-type]
                    IdempotencyRecord.key == self.key,  # type: ignore[arg-type]
                )
            )
        ).scalar()
        if found is None:
            return None
        if found.created_at < utcnow() - _ttl():
            await session.delete(found)  # expired: the key is free again
            await session.flush()
            return None
        if found.fingerprint != self.fingerprint:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"this {HEADER} was used for a different request; use a new key",
            )
        if found.status_code == 0:
            return _in_flight()
        return _answer(found.status_code, found.response, replayed=True)


def _ttl() -> timedelta:
    return timedelta(hours=get_settings().idempotency_ttl_hours)


def _dump(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(mode="json")


def _answer(code: int, body: Any, replayed: bool = False) -> JSONResponse:
    return JSONResponse(body, status_code=code, headers={REPLAYED: "true"} if replayed else None)


def _in_flight() -> JSONResponse:
    return JSONResponse(
        {"error": f"a request with this {HEADER} is still being processed; retry shortly"},
        status_code=status.HTTP_409_CONFLICT,
        headers={"Retry-After": "1"},
    )


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path and body; a JSON body in canonical form, so a client that
    re-serialises it (other key order or spacing) is still sending the same request."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    """1 to 255 printable ASCII characters (the draft's key is a quoted string)."""
    if not 0 < len(key) <= MAX_KEY or not all(" " <= c <= "~" for c in key):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"{HEADER} must be 1 to {MAX_KEY} printable ASCII characters",
        )
    return key


async def idempotency(
    request: Request,
    member: MemberDep,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Send the same key again to retry safely: the first answer comes "
            "back and nothing is done twice (kept for HELIOGRAPH_IDEMPOTENCY_TTL_HOURS).",
        ),
    ] = None,
) -> Idempotency:
    scope = f"member:{member.id}"
    if key is None:
        return Idempotency(scope, None, "")
    check_key(key)
    body = await request.body()  # cached by Starlette: the route's body param reads it too
    return Idempotency(scope, key, fingerprint(request.method, request.url.path, body))


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
