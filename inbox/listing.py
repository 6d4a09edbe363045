"""The inbox list (issue #16): one rule for the web app's inbox page and ``GET
/api/v1/conversations`` — views, filters and search — plus each row's SLA state.

``ConversationFilter`` (inbox/conversations.py) carries the fields; ``where`` turns them
into conditions; ``sla_state`` reads the same first-response rule as ``inbox.reads._late``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    and_,
    cast,
    column,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    table,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.identity import search_customers
from inbox.models import Conversation, Message

VIEWS = ("mine", "unassigned", "all", "waiting", "snoozed", "resolved")


def view_conditions(view: str | None, member_id: int | None) -> list[Any]:
    """mine: my unresolved; unassigned: the queue (open, nobody's); waiting: on the
    customer (pending); snoozed; resolved; all (or None): everything."""
    c = Conversation
    if view == "mine":
        return [c.assignee_id == member_id, c.status != "resolved"]
    if view == "unassigned":
        return [c.assignee_id.is_(None), c.status == "open"]  # type: ignore[union-attr]
    if view == "waiting":
        return [c.status == "pending"]
    if view in ("snoozed", "resolved"):
        return [c.status == view]
    return []


# --- search ----------------------------------------------------------------------------------
#
# A message matches when the query is a substring of its text or original_text, in any case.
# Both are served by a trigram index (migration 0022): SQLite's FTS5 table ``message_search``
# (tokenizer ``trigram``), PostgreSQL's pg_trgm GIN indexes on ``lower(text)`` and
# ``lower(original_text)`` (where not NULL). A trigram index needs 3 characters: a shorter query
# matches the customer's fields only (name, email, phone, channel id), never the text.

SHORTEST_TEXT_QUERY = 3
# Matching messages read through the index to choose how to list them: fewer, and the
# search lists exactly their conversations (the index answered it all); as many, and the
# word is common, so the newest conversations are tested one by one (the listing's LIMIT
# stops it early, as most conversations hold the word) instead of reading every match.
PROBE_LIMIT = 2000
# PostgreSQL: a word its planner expects in this many messages is common without a probe (a
# probe of a common word is a sequential read that stops after PROBE_LIMIT matches, about
# 15-30 ms on a million messages; the estimate takes 0.2 ms). A word the statistics
# over-estimate is still found, by the per-conversation test.
COMMON_ESTIMATE = 20 * PROBE_LIMIT


def like_pattern(q: str) -> str:
    """``%q%`` for ``LIKE ... ESCAPE '\\'``, lower-cased, the query's own wildcards literal."""
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


# Migration 0022's FTS5 table (SQLite): its rowid is the message's id.
_FTS = table("message_search", column("rowid"))


def _fts_match(q: str) -> Any:
    """``message_search MATCH '"q"'``: an FTS5 phrase, which with the trigram tokenizer is a
    case-folded substring match (the query's quotes doubled, nothing else special)."""
    phrase = '"' + q.replace('"', '""') + '"'
    return literal_column("message_search").op("MATCH")(phrase)


def _indexed_matches(dialect: str, q: str) -> Any:
    """The conversation id of each matching message, read through the text index."""
    if dialect == "sqlite":
        # The FTS table drives the join (its MATCH is lazy, so a LIMIT stops it).
        return (
            select(Message.conversation_id)  # type: ignore[call-overload]
            .select_from(_FTS.join(Message, Message.id == _FTS.c.rowid))  # type: ignore[arg-type]
            .where(_fts_match(q))
        )
    pattern = like_pattern(q)
    return select(Message.conversation_id).where(  # type: ignore[call-overload]
        or_(
            func.lower(Message.text).like(pattern, escape="\\"),
            # As the partial index on the original text is written (migration 0022).
            and_(
                Message.original_text.is_not(None),  # type: ignore[union-attr]
                func.lower(Message.original_text).like(pattern, escape="\\"),
            ),
        )
    )


async def _estimated_rows(session: AsyncSession, stmt: Any) -> float:
    """PostgreSQL's estimate of the rows ``stmt`` returns: its plan, not run (``EXPLAIN``).
    With the statistics ANALYZE keeps on the indexed ``lower(text)``, the estimate of a
    ``LIKE '%q%'`` is close for a common word (a sample of the table holds it)."""
    compiled = stmt.compile(dialect=session.bind.dialect)  # type: ignore[union-attr]
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    connection = await session.connection()
    plan = (
        await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", params)
    ).scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def _scanned_match(dialect: str, q: str) -> Any:
    """A message of this conversation holds ``q``, tested on each of its messages without
    the index: the per-conversation form, which the listing (newest first, LIMIT) stops
    early on when most conversations match. Not the index, on purpose: PostgreSQL's
    planner would read every match through the GIN indexes (a LIKE), and an FTS5 query per
    message costs SQLite about 0.2-1 ms each. SQLite's ``lower()`` folds ASCII letters only
    (FTS5 folds every script), so there a common word matches other scripts' capitals
    exactly, as the search did before the index."""
    needle = q.lower()
    position = func.instr if dialect == "sqlite" else func.strpos
    return exists().where(
        Message.conversation_id == Conversation.id,  # type: ignore[arg-type]
        or_(
            position(func.lower(Message.text), needle) > 0,
            position(func.lower(func.coalesce(Message.original_text, "")), needle) > 0,
        ),
    )


async def message_text_condition(session: AsyncSession, q: str) -> Any:
    """A condition on ``Conversation``: one of its messages holds ``q`` (3 characters at
    least), case-insensitively, in its text or original text. The index is read once (at
    most ``PROBE_LIMIT`` matches): a rare word becomes the list of its conversations, a
    common one the per-conversation test (``_scanned_match``)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    matches = _indexed_matches(dialect, q)
    if dialect == "postgresql" and await _estimated_rows(session, matches) >= COMMON_ESTIMATE:
        return _scanned_match(dialect, q)  # common for sure: no need to read 2,000 matches
    found = [int(x) for x in (await session.execute(matches.limit(PROBE_LIMIT))).scalars()]
    if len(found) < PROBE_LIMIT:
        ids = sorted(set(found))
        return Conversation.id.in_(ids) if ids else false()  # type: ignore[union-attr]
    return _scanned_match(dialect, q)


async def search_conditions(session: AsyncSession, q: str | None) -> list[Any]:
    """Customer name, email or phone (crm_core's search) or any message's text (3
    characters at least; see ``SHORTEST_TEXT_QUERY``)."""
    q = (q or "").strip()
    if not q:
        return []
    customer_ids = [int(x.id) for x in await search_customers(session, q, limit=200)]  # type: ignore[arg-type]
    options: list[Any] = []
    if len(q) >= SHORTEST_TEXT_QUERY:
        options.append(await message_text_condition(session, q))
    if customer_ids:
        options.append(Conversation.customer_id.in_(customer_ids))  # type: ignore[attr-defined]
    return [or_(*options)] if options else [false()]


def tag_condition(tag: str) -> Any:
    """``topic_tags`` (a JSON list) holds ``tag``: its JSON text has ``"tag"``."""
    needle = '%"' + tag.replace('"', "") + '"%'
    return cast(Conversation.topic_tags, String).like(needle)


def sla_state(
    conversation: Conversation, now: datetime, targets: Mapping[str, float]
) -> tuple[str, datetime] | None:
    """("late" | "due", the moment) for an unanswered open conversation whose priority has a
    first-response target; None otherwise (as ``inbox.reads._late`` counts it)."""
    minutes = targets.get(conversation.priority)
    if (
        not minutes
        or conversation.status not in ("open", "pending")
        or conversation.first_response_at is not None
    ):
        return None
    due = conversation.created_at + timedelta(minutes=minutes)
    return ("late" if due <= now else "due", due)
