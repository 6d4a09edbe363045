"""``Idempotency-Key`` for POST routes: a retry after a lost answer gets the first answer
back (same status, same body) and nothing is done twice.

The habits of Stripe's API and the IETF draft "The Idempotency-Key HTTP Header Field"
(https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/):

- A key belongs to the member who sent it (scope ``member:{id}``): two members' keys
  never meet.
- The first request's method, path and body are fingerprinted (SHA-256); the same key
  with another request is refused (422), never answered with the other request's result.
- Storing and replaying answers is the kernel's (``heliograph.idempotency``): the record
  is written in the request's own transaction, so concurrent duplicates settle on the
  unique key (scope, key); a record seen with no answer yet is answered 409, as Stripe
  does. Only successes are kept, and records expire after
  ``HELIOGRAPH_IDEMPOTENCY_TTL_HOURS`` (default 24).

A route takes ``idem: IdempotencyDep`` and hands its work to ``idem.run``, which commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from heliograph import idempotency as kept
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

        async def done() -> kept.Done:
            outcome = await work()
            return kept.Done(outcome.status_code, _dump(outcome.body), outcome.customer_id)

        try:
            answer = await kept.run_once(session, self.scope, self.key, self.fingerprint, done)
        except kept.KeyReused:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"this {HEADER} was used for a different request; use a new key",
            ) from None
        if answer.in_flight:
            return _in_flight()
        return _answer(answer.status_code, answer.body, replayed=answer.replayed)


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
