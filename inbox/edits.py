"""A customer edited a message they had sent: the text is updated, the edit recorded.

Edits reach the inbox through ``inbox.intake.receive`` and are applied in the ingest
writer's batch transaction (``apply_edits``), with the messages and statuses of that batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from heliograph.bulk import pairs_in
from heliograph.db import utcnow
from inbox.bus import MessageEdited
from inbox.models import Message


@dataclass(frozen=True)
class InboundEdit:
    """A customer changed a message they sent earlier (Telegram edited_message, ...)."""

    channel: str
    provider_message_id: str
    text: str
    edited_at: datetime | None = None


_MESSAGE = Message.__table__  # type: ignore[attr-defined]
_EDIT = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("mid"))
    .values(
        text=bindparam("new_text"),
        original_text=bindparam("new_original"),
        translation_status=None,  # detect and translate the new words again
        edited_at=bindparam("at"),
        raw=bindparam("new_raw", type_=_MESSAGE.c.raw.type),
    )
)


def apply_edits(
    conn: Connection, edits: Sequence[InboundEdit]
) -> tuple[list[int | None], list[MessageEdited]]:
    """Apply ``edits`` in order in the caller's transaction. For each, the message id, or
    None when the original never reached us; and the ``message.edited`` payloads to publish.

    The text before the first edit is kept in ``original_text`` unless translation has
    already used that column; every edit is also published as ``message.edited`` so the
    history can be shown. Replaying the same edit changes nothing.
    """
    if not edits:
        return [], []
    keys = list(dict.fromkeys((e.channel, e.provider_message_id) for e in edits))
    c = _MESSAGE.c
    rows = conn.execute(
        select(
            c.id,
            c.channel,
            c.provider_message_id,
            c.conversation_id,
            c.text,
            c.original_text,
            c.translation_status,
            c.raw,
        ).where(pairs_in(c.channel, c.provider_message_id, keys))
    ).all()
    found: dict[tuple[str, str], dict[str, Any]] = {
        (r.channel, r.provider_message_id): dict(r._mapping) for r in rows
    }
    changed: dict[int, dict[str, Any]] = {}
    ids: list[int | None] = []
    events: list[MessageEdited] = []
    for edit in edits:
        message = found.get((edit.channel, edit.provider_message_id))
        if message is None:
            ids.append(None)
            continue
        ids.append(message["id"])
        translated = message["translation_status"] == "done"
        previous = message["original_text"] if translated else message["text"]
        if previous == edit.text:
            continue
        if translated:
            # ``text`` is our translation of ``original_text`` (inbox/translation.py): the
            # customer's new words replace the original, and the message is translated again.
            message["original_text"] = edit.text
        else:
            message["text"] = edit.text
        message["translation_status"] = None
        now = utcnow()
        message["edited_at"] = edit.edited_at or now
        raw = dict(message["raw"] or {})
        raw["edits"] = [*raw.get("edits", []), {"text": previous, "replaced_at": now.isoformat()}]
        message["raw"] = raw
        changed[message["id"]] = message
        events.append(
            MessageEdited(message_id=message["id"], conversation_id=message["conversation_id"])
        )
    if changed:
        conn.execute(
            _EDIT,
            [
                {
                    "mid": m["id"],
                    "new_text": m["text"],
                    "new_original": m["original_text"],
                    "at": m["edited_at"],
                    "new_raw": m["raw"],
                }
                for m in changed.values()
            ],
        )
    return ids, events
