"""What every provider webhook does: verify (403), parse (400/422), store, then answer 200."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request

from channels.base import WebhookRequest, get_adapter
from heliograph.db import get_db
from inbox.edits import InboundEdit, apply_edit
from inbox.ingest import AcceptResult, accept
from inbox.ingest_batch import CommitFailed


@dataclass
class WebhookOutcome:
    accepted: list[AcceptResult] = field(default_factory=list)
    edited: list[int] = field(default_factory=list)
    ignored: int = 0


async def handle_webhook(channel: str, request: Request, body: bytes) -> WebhookOutcome:
    """Everything is committed before this returns, so the caller may then answer 200."""
    adapter = get_adapter(channel)
    hook = WebhookRequest(
        request.method, str(request.url), request.headers, body, dict(request.query_params)
    )
    await adapter.verify(hook)  # before anything is parsed or stored
    outcome = WebhookOutcome()
    items = adapter.parse(hook)
    if not items:
        outcome.ignored += 1
    db = get_db()
    for item in items:
        if isinstance(item, InboundEdit):
            edited = await apply_edit(
                db, item.channel, item.provider_message_id, item.text, item.edited_at
            )
            if edited is None:
                outcome.ignored += 1
            else:
                outcome.edited.append(edited)
        else:
            try:
                outcome.accepted.append(await accept(db, item))
            except CommitFailed as exc:
                # Nothing of it is known to be on disk: never a 200; the provider retries
                # (and a retry of what was stored after all is a replay, a no-op).
                raise HTTPException(
                    503, f"the message was not stored, try again: {exc}", {"Retry-After": "1"}
                ) from exc
    return outcome
