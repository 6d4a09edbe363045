"""What a channel hands the inbox, and how a batch of it is stored in one transaction.

``store_batch`` is the one path of every inbound item (DESIGN.md, "The path of one
message"): dedupe -> identity -> thread -> store -> jobs for messages, with their consent
changes and unverified-sender notes, then edits and provider status updates, all with
set-based Core statements (about a dozen per batch, whatever its size) in the caller's
transaction. The ingest writer (``inbox.ingest_batch``) runs it for everything queued and
commits once; a single item is a batch of one. Channels call ``inbox.intake.receive``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from crm_core.identity import ResolvedIds, SenderProfile, resolve_senders, set_opt_outs
from heliograph import jobs
from heliograph.bulk import insert_ids, new_row, pairs_in
from heliograph.db import utcnow
from heliograph.settings import get_settings
from inbox.bus import (
    FETCH_ATTACHMENT,
    MESSAGE_EDITED,
    MESSAGE_RECEIVED,
    AttachmentRef,
    MessageReceived,
)
from inbox.edits import InboundEdit, apply_edits
from inbox.models import Attachment, Conversation, Message, Note
from inbox.outbox import StatusRecorded, record_statuses


@dataclass
class InboundAttachment:
    kind: str  # image, audio, video, file
    url: str | None = None
    content_type: str | None = None
    filename: str | None = None
    size: int | None = None
    provider_file_id: str | None = None


@dataclass
class InboundMessage:
    """What every channel adapter turns a provider's payload into."""

    channel: str
    provider_message_id: str
    sender: SenderProfile
    text: str = ""
    sent_at: datetime | None = None
    attachments: list[InboundAttachment] = field(default_factory=list)
    thread_key: str = ""
    subject: str | None = None
    raw: dict[str, Any] | None = None
    # A consent keyword (SMS STOP / START): True opts the sender out of this channel,
    # False back in; applied with the message, never on a replay (inbox/intake.py).
    consent: bool | None = None
    # Set when the channel could not verify the sender (e.g. unauthenticated mail): a new
    # message marks its conversation ``unverified_sender`` and adds this as a note.
    unverified_note: str | None = None
    # When the request carrying it reached our door (``message.received_at``): set by
    # ``inbox.intake.receive`` when the route has not set it earlier; None outside a request.
    received_at: datetime | None = None


@dataclass(frozen=True)
class StatusUpdate:
    """A provider saying what became of a message we sent."""

    channel: str
    external_id: str
    status: str  # sent, delivered, read, failed
    error: str | None = None
    recipient_opted_out: str | None = None  # the recipient's external id, when the cause is STOP


@dataclass(frozen=True)
class AcceptResult:
    message_id: int
    conversation_id: int
    customer_id: int
    duplicate: bool
    new_conversation: bool = False
    provider_message_id: str = ""


Item = InboundMessage | InboundEdit | StatusUpdate
# What became of an item: a message's result, an edited message's id (None: the original
# never reached us), the reply a status update named (None: no reply has its id yet; the
# update is kept for the outbox, inbox.outbox.record_statuses).
Stored = AcceptResult | int | None | StatusRecorded


def new_conversation(
    msg: InboundMessage, customer_id: int, identity_id: int, language: str | None, vip: bool
) -> dict[str, Any]:
    """The values of the conversation a customer's first message on a thread opens."""
    return {
        "customer_id": customer_id,
        "identity_id": identity_id,
        "channel": msg.channel,
        "thread_key": msg.thread_key,
        "subject": msg.subject,
        "language": language,
        "language_source": "customer" if language else None,
        "priority": "high" if vip else "normal",
    }


def received_event(
    message_id: int,
    conversation_id: int,
    customer_id: int,
    msg: InboundMessage,
    *,
    created: bool,
    reopened: bool,
) -> MessageReceived:
    """The payload of ``message.received``, which every follow-up job of a message gets."""
    return MessageReceived(
        message_id=message_id,
        conversation_id=conversation_id,
        customer_id=customer_id,
        new_conversation=created,
        reopened=reopened,
        has_attachments=bool(msg.attachments),
    )


_MESSAGE = Message.__table__  # type: ignore[attr-defined]
_CONVERSATION = Conversation.__table__  # type: ignore[attr-defined]
_ATTACHMENT = Attachment.__table__  # type: ignore[attr-defined]
_NOTE = Note.__table__  # type: ignore[attr-defined]
_TOUCH = (
    update(_CONVERSATION)
    .where(_CONVERSATION.c.id == bindparam("cid"))
    .values(
        status="open",
        snoozed_until=None,
        identity_id=bindparam("iid"),
        last_message_at=bindparam("now"),
        updated_at=bindparam("now"),
        waiting_since=func.coalesce(_CONVERSATION.c.waiting_since, bindparam("now")),
    )
)


@dataclass
class _Thread:
    """One conversation the batch writes to."""

    id: int
    status: str  # before this batch
    created: bool
    identity_id: int = 0
    announced: bool = False  # the batch's first message in it carries the event's flags


def store_batch(conn: Connection, items: Sequence[Item]) -> list[Stored]:
    """Store ``items`` in the connection's transaction; what became of each, in order.

    Messages first (with their consent changes and unverified notes), then edits (so an
    edit of a message earlier in the batch finds it), then status updates. Raises on any
    clash with a concurrent writer (the caller rolls back and runs it again)."""
    msgs = [i for i in items if isinstance(i, InboundMessage)]
    edits = [i for i in items if isinstance(i, InboundEdit)]
    updates = [i for i in items if isinstance(i, StatusUpdate)]
    job_rows: list[dict[str, Any]] = []
    accepted = _store_messages(conn, msgs, job_rows) if msgs else []
    opt_outs = [
        (m.channel, m.sender.external_id, m.consent)
        for m, r in zip(msgs, accepted, strict=True)
        if m.consent is not None and not r.duplicate
    ]
    notes = [
        (r.conversation_id, m.unverified_note)
        for m, r in zip(msgs, accepted, strict=True)
        if m.unverified_note is not None and not r.duplicate
    ]
    if notes:
        _mark_unverified(conn, notes)
    edited, edit_events = apply_edits(conn, edits)
    job_rows += jobs.published(MESSAGE_EDITED, edit_events) if edit_events else []
    known = (
        record_statuses(conn, [(u.channel, u.external_id, u.status, u.error) for u in updates])
        if updates
        else []
    )
    opt_outs += [(u.channel, u.recipient_opted_out, True) for u in updates if u.recipient_opted_out]
    set_opt_outs(conn, opt_outs)  # type: ignore[arg-type]
    # One INSERT for every follow-up job of the batch, however many subscribers there are.
    if job_rows:
        conn.execute(insert(jobs.JOB_TABLE), job_rows)
    answers: dict[type, list[Any]] = {
        InboundMessage: accepted,
        InboundEdit: edited,
        StatusUpdate: known,
    }
    cursors = dict.fromkeys(answers, 0)
    results: list[Stored] = []
    for item in items:
        kind = type(item)
        results.append(answers[kind][cursors[kind]])
        cursors[kind] += 1
    return results


def _mark_unverified(conn: Connection, notes: list[tuple[int, str]]) -> None:
    """Each new message from a sender the channel could not verify: its conversation is
    marked ``unverified_sender`` and a note (no author) says why."""
    conn.execute(
        update(_CONVERSATION)
        .where(_CONVERSATION.c.id.in_({cid for cid, _ in notes}))
        .values(unverified_sender=True)
    )
    conn.execute(
        insert(_NOTE),
        [new_row(Note, conversation_id=cid, author_id=None, text=text) for cid, text in notes],
    )


def _store_messages(
    conn: Connection, msgs: Sequence[InboundMessage], job_rows: list[dict[str, Any]]
) -> list[AcceptResult]:
    """The batch's messages: one result per message, in order; their jobs' rows are added
    to ``job_rows``. A replay (within the batch or of an earlier one) reports the stored row."""
    keys = [(m.channel, m.provider_message_id) for m in msgs]
    stored = _stored(conn, list(dict.fromkeys(keys)))
    fresh: dict[tuple[str, str], InboundMessage] = {}
    for key, msg in zip(keys, msgs, strict=True):
        if key not in stored:
            fresh.setdefault(key, msg)
    new = list(fresh.values())
    resolved = resolve_senders(conn, [m.sender for m in new]) if new else []
    wanted: dict[tuple[int, str, str], tuple[ResolvedIds, InboundMessage]] = {}
    for who, msg in zip(resolved, new, strict=True):
        wanted.setdefault((who.customer_id, msg.channel, msg.thread_key), (who, msg))
    threads = _threads(conn, wanted) if wanted else {}
    ids = _insert_messages(conn, resolved, new, threads)
    events: list[MessageReceived] = []
    for message_id, who, msg in zip(ids, resolved, new, strict=True):
        thread = threads[(who.customer_id, msg.channel, msg.thread_key)]
        first, thread.announced = not thread.announced, True
        stored[(msg.channel, msg.provider_message_id)] = (message_id, thread.id, who.customer_id)
        job_rows += _attachments(conn, message_id, msg)
        events.append(
            received_event(
                message_id,
                thread.id,
                who.customer_id,
                msg,
                created=first and thread.created,
                reopened=first and not thread.created and thread.status != "open",
            )
        )
    if threads:
        now = utcnow()
        conn.execute(
            _TOUCH, [{"cid": t.id, "iid": t.identity_id, "now": now} for t in threads.values()]
        )
    if events:
        job_rows += jobs.published(MESSAGE_RECEIVED, events)
    created = {e.message_id: e.new_conversation for e in events}
    answers = []
    seen: set[tuple[str, str]] = set()
    for key in keys:
        message_id, conversation_id, customer_id = stored[key]
        first_time = key in fresh and key not in seen
        seen.add(key)
        answers.append(
            AcceptResult(
                message_id,
                conversation_id,
                customer_id,
                duplicate=not first_time,
                new_conversation=first_time and created.get(message_id, False),
                provider_message_id=key[1],
            )
        )
    return answers


def _stored(
    conn: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Messages already stored under these dedupe keys: key -> (id, conversation, customer)."""
    rows = conn.execute(
        select(
            _MESSAGE.c.channel,
            _MESSAGE.c.provider_message_id,
            _MESSAGE.c.id,
            _MESSAGE.c.conversation_id,
            _MESSAGE.c.customer_id,
        ).where(pairs_in(_MESSAGE.c.channel, _MESSAGE.c.provider_message_id, keys))
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows.all()}


def _threads(
    conn: Connection, wanted: dict[tuple[int, str, str], tuple[ResolvedIds, InboundMessage]]
) -> dict[tuple[int, str, str], _Thread]:
    """The conversation of every (customer, channel, thread) of the batch: the active one,
    else a recently resolved one (reopened), else a new one. New conversations are open,
    so (customer, channel, thread) is unique among them: a concurrent writer opening the
    same one makes the INSERT raise, and the retry joins theirs."""
    c = _CONVERSATION.c
    customers = {key[0] for key in wanted}
    rows = conn.execute(
        select(c.id, c.customer_id, c.channel, c.thread_key, c.status).where(
            c.customer_id.in_(customers), c.status != "resolved"
        )
    )
    found = {
        (r.customer_id, r.channel, r.thread_key): _Thread(r.id, r.status, False)
        for r in rows.all()
        if (r.customer_id, r.channel, r.thread_key) in wanted
    }
    missing = [key for key in wanted if key not in found]
    if missing:
        window = timedelta(hours=get_settings().reopen_window_hours)
        rows = conn.execute(
            select(c.id, c.customer_id, c.channel, c.thread_key)
            .where(
                c.customer_id.in_({key[0] for key in missing}),
                c.status == "resolved",
                c.resolved_at >= utcnow() - window,
            )
            .order_by(c.resolved_at.desc())
        )
        reopen: dict[tuple[int, str, str], int] = {}
        for r in rows.all():
            key = (r.customer_id, r.channel, r.thread_key)
            if key in wanted and key not in found:
                reopen.setdefault(key, r.id)
        if reopen:
            conn.execute(
                update(_CONVERSATION)
                .where(c.id.in_(reopen.values()))
                .values(status="open", resolved_at=None)
            )
            found.update({key: _Thread(cid, "resolved", False) for key, cid in reopen.items()})
    new = [key for key in wanted if key not in found]
    if new:
        rows_in = []
        for key in new:
            resolved, msg = wanted[key]
            values = new_conversation(
                msg, resolved.customer_id, resolved.identity_id, resolved.language, resolved.vip
            )
            rows_in.append(new_row(Conversation, **values))
        ids = insert_ids(conn, _CONVERSATION, rows_in, key=("customer_id", "channel", "thread_key"))
        found.update({key: _Thread(cid, "open", True) for key, cid in zip(new, ids, strict=True)})
    return found


def _insert_messages(
    conn: Connection,
    resolved: list[ResolvedIds],
    msgs: list[InboundMessage],
    threads: dict[tuple[int, str, str], _Thread],
) -> list[int]:
    """One multi-row INSERT of the batch's new messages; their ids, in order."""
    if not msgs:
        return []
    # The batch's time just before its COMMIT (the rest of the batch is a few statements
    # more), stamped in this INSERT rather than by an UPDATE afterwards.
    committed_at = utcnow()
    rows = []
    for who, msg in zip(resolved, msgs, strict=True):
        thread = threads[(who.customer_id, msg.channel, msg.thread_key)]
        thread.identity_id = who.identity_id  # the last message's identity is answered
        rows.append(
            {
                "conversation_id": thread.id,
                "customer_id": who.customer_id,
                "channel": msg.channel,
                "direction": "in",
                "author_type": "customer",
                "text": msg.text,
                "provider_message_id": msg.provider_message_id,
                "sent_at": msg.sent_at,
                "raw": msg.raw,
                "received_at": msg.received_at,
                "committed_at": committed_at,
            }
        )
    return insert_ids(conn, _MESSAGE, rows, key=("channel", "provider_message_id"))


def _attachments(conn: Connection, message_id: int, msg: InboundMessage) -> list[dict[str, Any]]:
    """Store the message's attachments; returns the rows of their fetch jobs."""
    if not msg.attachments:
        return []
    rows = [new_row(Attachment, message_id=message_id, **item.__dict__) for item in msg.attachments]
    ids = insert_ids(conn, _ATTACHMENT, rows)
    return jobs.job_rows(
        [(FETCH_ATTACHMENT, AttachmentRef(attachment_id=i), None) for i in ids],
        [f"fetch:{i}" for i in ids],
    )
