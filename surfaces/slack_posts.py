"""Posting to Slack for the agent surfaces: once per key, and finding people.

Slack's ``chat.postMessage`` has no idempotency key, so each post has a key of ours
(``SlackAgentPost``), committed as "sending" (with a lease) before the call and carried in
the message's metadata (https://docs.slack.dev/messaging/message-metadata). When an
earlier try failed, Slack may have the message anyway (its answer was lost, or the worker
died after the call): the next try first looks for a message with that key in the thread
(``conversations.replies``) or the channel (``conversations.history``, both with
``include_all_metadata``) and adopts its ts instead of posting again. A 429 or 5xx is a
``RetryLater`` (``channels.slack.api_call``, which honours Retry-After); two workers on one
key: the second waits (``Defer``) while the first holds the lease. No database
transaction is held open across a Slack call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from channels import slack
from heliograph import jobs
from heliograph.db import get_db, utcnow
from heliograph.settings import get_settings
from routing import reads as routing_reads
from routing import team
from surfaces.models import SlackAgentPost

log = logging.getLogger(__name__)

METADATA_TYPE = "heliograph_post"

# The Web API client of this task (and the tasks it starts) while ``one_session`` runs.
_session_client: ContextVar[AsyncWebClient | None] = ContextVar("slack_session", default=None)


def web_client() -> AsyncWebClient:
    """The client for a Slack call: ``one_session``'s inside one, else the process's."""
    return _session_client.get() or slack.web_client()


@asynccontextmanager
async def one_session() -> AsyncIterator[None]:
    """Every Slack call inside goes over one HTTP session (kept-alive connections) instead
    of a new session and connection per call, as the process's client makes; the session
    is closed on the way out, in the task that opened it. Use it around a batch's calls."""
    if _session_client.get() is not None:
        yield
        return
    base = slack.web_client()
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(
            token=base.token, base_url=base.base_url, timeout=base.timeout, session=session
        )
        token = _session_client.set(client)
        try:
            yield
        finally:
            _session_client.reset(token)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def post_once(
    key: str,
    channel: str,
    text: str,
    *,
    thread_ts: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
    then: Callable[[AsyncSession, str], Awaitable[None]] | None = None,
) -> str:
    """Post ``text`` (and ``blocks``) once under ``key``; the ts Slack gave it.
    ``then(session, ts)``: run in the commit that records the ts (e.g. keep it on the
    thread's row), so that what depends on the post is stored with it or not at all."""
    db = get_db()
    now = utcnow()
    async with db.session() as session:
        row = await session.get(SlackAgentPost, key)
        if row is not None and row.ts:
            if then is not None:  # posted by a try that stopped before its ``then``
                await then(session, row.ts)
                await session.commit()
            return row.ts
        earlier = row is not None  # a try before this one may have reached Slack
        created_at = _aware(row.created_at) if row is not None else now
        lease = now + timedelta(seconds=get_settings().outbound_timeout_s * 2 + 10)
        if row is None:
            session.add(
                SlackAgentPost(
                    key=key, channel=channel, thread_ts=thread_ts, lease_until=lease, created_at=now
                )
            )
        else:
            taken = await session.execute(
                update(SlackAgentPost)
                .where(
                    SlackAgentPost.key == key,  # type: ignore[arg-type]
                    or_(
                        SlackAgentPost.state != "sending",  # type: ignore[arg-type]
                        SlackAgentPost.lease_until < now,  # type: ignore[arg-type, operator]
                    ),
                )
                .values(state="sending", lease_until=lease)
            )
            if not taken.rowcount:  # type: ignore[attr-defined]
                raise jobs.Defer(f"another worker is posting {key}", 2.0)
        try:
            await session.commit()
        except IntegrityError:
            raise jobs.Defer(f"another worker began posting {key}", 1.0) from None
    try:
        ts = await _find_posted(key, channel, thread_ts, created_at) if earlier else None
        if ts is None:
            ts = await _post(key, channel, text, thread_ts, blocks)
    except BaseException:
        await _set_post(key, state="unknown", lease_until=None)
        raise
    await _set_post(key, state="posted", ts=ts, lease_until=None, then=then)
    return ts


Then = Callable[[AsyncSession, list[str]], Awaitable[None]]


@dataclass
class ThreadLines:
    """Lines ``(key, text)`` to post in one thread, in order, and what to do in the commit
    that records them (``then(session, posted_keys)``: e.g. move the thread's mirror mark;
    run only when every line went)."""

    channel: str
    thread_ts: str
    lines: list[tuple[str, str]]
    then: Then | None = None


async def post_lines(
    channel: str, thread_ts: str, lines: list[tuple[str, str]], then: Then | None = None
) -> dict[str, str]:
    """``post_in_threads`` for one thread: its error propagates. Returns each key's ts."""
    (error,), posted = await post_in_threads([ThreadLines(channel, thread_ts, lines, then)])
    if error is not None:
        raise error
    return posted


async def post_in_threads(
    threads: list[ThreadLines], *, at_once: int = 1, first: Then | None = None
) -> tuple[list[Exception | None], dict[str, str]]:
    """Post each thread's lines, each line once: ``post_once`` for many, in two
    transactions for all of them instead of three per line. The first claims every new
    key; the threads' lines are posted (up to ``at_once`` threads side by side, each
    thread's in order); the second records each ts and runs the ``then`` of every thread
    whose lines all went, in the same commit. A key an earlier try left behind goes through
    ``post_once``, which looks for a lost answer before posting. A thread whose post fails
    stops there, its error in the list returned (one per thread, None where all went); the
    lines already posted are recorded, so a retry skips them. Returned beside the errors:
    each posted key's ts. ``first(session, keys)``: run in that commit before the threads'
    ``then``s, once, with the keys of every thread whose lines all went (one statement for
    what they share, e.g. the messages' time stamps, taken in one order)."""
    db = get_db()
    now = utcnow()
    lease = now + timedelta(seconds=get_settings().outbound_timeout_s * 2 + 10)
    async with db.session() as session:
        found = await session.execute(
            select(SlackAgentPost.key, SlackAgentPost.ts).where(  # type: ignore[call-overload]
                SlackAgentPost.key.in_([key for t in threads for key, _ in t.lines])  # type: ignore[attr-defined]
            )
        )
        known = dict(found.all())
        fresh = [key for t in threads for key, _ in t.lines if key not in known]
        session.add_all(
            SlackAgentPost(
                key=key, channel=t.channel, thread_ts=t.thread_ts, lease_until=lease, created_at=now
            )
            for t in threads
            for key, _ in t.lines
            if key not in known
        )
        try:
            await session.commit()
        except IntegrityError:
            raise jobs.Defer("another worker began posting these lines", 1.0) from None
    posted: dict[str, str] = {}
    errors: list[Exception | None] = [None] * len(threads)
    limit = asyncio.Semaphore(max(1, at_once))

    async def thread(n: int, t: ThreadLines) -> None:
        async with limit:
            try:
                for key, text in t.lines:
                    if known.get(key):
                        posted[key] = str(known[key])  # posted before: not again
                    elif key in known:
                        posted[key] = await post_once(key, t.channel, text, thread_ts=t.thread_ts)
                    else:
                        posted[key] = await _post(key, t.channel, text, t.thread_ts, None)
            except Exception as exc:
                errors[n] = exc

    try:
        await asyncio.gather(*(thread(n, t) for n, t in enumerate(threads)))
    except BaseException:  # cancelled (the job's time ran out): keep what Slack has
        await _record(posted, [k for k in fresh if k not in posted], [])
        raise
    went = [t for t, error in zip(threads, errors, strict=True) if error is None]
    thens = [(t.then, [key for key, _ in t.lines]) for t in went if t.then is not None]
    if first is not None:
        thens.insert(0, (first, [key for t in went for key, _ in t.lines]))
    await _record(posted, [k for k in fresh if k not in posted], thens)
    return errors, posted


async def _record(
    posted: dict[str, str], unknown: list[str], thens: list[tuple[Then, list[str]]]
) -> None:
    async with get_db().session() as session:
        if posted:
            table = SlackAgentPost.__table__  # type: ignore[attr-defined]
            await session.execute(
                update(table)
                .where(table.c.key == bindparam("k"))
                .values(state="posted", ts=bindparam("t"), lease_until=None),
                [{"k": key, "t": ts} for key, ts in posted.items()],
            )
        if unknown:  # Slack may or may not have them: the next try looks first
            await session.execute(
                update(SlackAgentPost)
                .where(SlackAgentPost.key.in_(unknown))  # type: ignore[attr-defined]
                .values(state="unknown", lease_until=None)
            )
        for then, keys in thens:
            await then(session, keys)
        await session.commit()


async def _set_post(
    key: str, *, then: Callable[[AsyncSession, str], Awaitable[None]] | None = None, **values: Any
) -> None:
    async with get_db().session() as session:
        await session.execute(
            update(SlackAgentPost).where(SlackAgentPost.key == key).values(**values)  # type: ignore[arg-type]
        )
        if then is not None:
            await then(session, values["ts"])
        await session.commit()


async def _post(
    key: str,
    channel: str,
    text: str,
    thread_ts: str | None,
    blocks: list[dict[str, Any]] | None,
) -> str:
    args: dict[str, Any] = {
        "channel": channel,
        "text": text,
        "metadata": {"event_type": METADATA_TYPE, "event_payload": {"key": key}},
        "unfurl_links": False,
    }
    if thread_ts:
        args["thread_ts"] = thread_ts
    if blocks:
        args["blocks"] = blocks
    response = await slack.api_call(web_client().chat_postMessage, **args)
    return str(response["ts"])


async def _find_posted(
    key: str, channel: str, thread_ts: str | None, since: datetime
) -> str | None:
    """The ts of a message we posted under ``key`` (a try whose answer was lost)."""
    client = web_client()
    cursor = None
    for _ in range(5):  # 5 pages of 200: far more than a thread or a minute of a channel
        page: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
        if cursor:
            page["cursor"] = cursor
        if thread_ts:
            answer = await slack.api_call(client.conversations_replies, ts=thread_ts, **page)
        else:
            oldest = f"{since.timestamp() - 60:.6f}"
            answer = await slack.api_call(client.conversations_history, oldest=oldest, **page)
        for message in answer.get("messages") or []:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == key:
                log.info("Slack already had %s (an answer was lost); not posting it again", key)
                return str(message["ts"])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


async def update_message(channel: str, ts: str, text: str, blocks: list[Any] | None = None) -> None:
    """``chat.update`` sets the message to what it should show: repeating it is harmless."""
    args: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
    if blocks is not None:
        args["blocks"] = blocks
    await slack.api_call(web_client().chat_update, **args)


# --- who a member is in Slack ----------------------------------------------------------


async def member_slack_id(member_id: int | None) -> str | None:
    """The member's Slack user id; found by email (users.lookupByEmail) the first time and
    kept. No database transaction is held open across the Slack call."""
    if member_id is None:
        return None
    async with get_db().read_session() as session:
        member = await routing_reads.member(session, member_id)
    if member is None or member.slack_user_id:
        return member.slack_user_id if member else None
    try:
        found = await slack.api_call(web_client().users_lookupByEmail, email=member.email)
    except jobs.PermanentFailure:  # users_not_found: they are not in the workspace
        return None
    user = str(found["user"]["id"])
    await store_slack_id(member_id, user)
    return user


async def store_slack_id(member_id: int, user: str) -> None:
    async with get_db().session() as session:
        await team.store_slack_id(session, member_id, user)
        await session.commit()


# Each member's DM channel with the bot, by (workspace API, bot token, user): Slack answers
# conversations.open with the same channel every time, and the method is rate-limited
# (Tier 3, about 50 calls a minute), so it is asked once per member and process, not at
# every assignment (a 40 msg/s run asked it 175 times in 40 s).
_dm_channels: dict[tuple[str, str, str], str] = {}


def forget_dm_channels() -> None:
    """Ask Slack again for each member's DM channel (another workspace or fake Slack)."""
    _dm_channels.clear()


async def open_dm(user: str) -> str:
    """The DM channel between the bot and ``user`` (opened by conversations.open once)."""
    client = web_client()
    key = (client.base_url, client.token or "", user)
    if key not in _dm_channels:
        opened = await slack.api_call(client.conversations_open, users=user)
        _dm_channels[key] = str(opened["channel"]["id"])
    return _dm_channels[key]
