"""The inbox's events and job kinds, each declared once: a name and its payload model.

The models keep the JSON stored in ``job.payload`` as it always was (field for field), so
jobs queued by an earlier version still run. A subscriber's job kind may take a base of
an event's model (``jobs.subscribe``): e.g. every message event is a ``MessageRef``, so one
kind that only needs the message id can listen to several of them.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from heliograph import jobs, live

# The live events of the web app's open pages (heliograph.live; the pages listen with
# ``sse:<event>``): the inbox's lists, and one conversation's thread.
INBOX_PAGE = "inbox"


def thread_page(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def pages_changed(conversation_id: int, *, inbox: bool = True, session: Any = None) -> None:
    """Tell the open pages showing the conversation to refresh: its thread and, with
    ``inbox``, the inbox's lists. With ``session``: once that session commits; without:
    now (the caller has committed)."""
    data = {"conversation_id": conversation_id}
    events = [thread_page(conversation_id)] + ([INBOX_PAGE] if inbox else [])
    for event in events:
        if session is None:
            live.publish(event, data)
        else:
            live.after_commit(session, event, data)


class MessageRef(jobs.Payload):
    """A message, by id (the payload of ``message.translate``, ``reply.translate`` and
    ``outbox.deliver``, and the base of every message event)."""

    message_id: int


class ConversationRef(jobs.Payload):
    conversation_id: int


class AttachmentRef(jobs.Payload):
    """An attachment, by id (``attachment.fetch``)."""

    attachment_id: int


class ConversationMessage(MessageRef, ConversationRef):
    """A message in its conversation: what a listener to several message events reads."""

    # Only ``message.received`` carries it (a reply never reopens a conversation); a
    # listener to several message events reads it here. Never stored from this model.
    reopened: bool = Field(default=False, exclude=True)


class MessageReceived(ConversationMessage):
    """``message.received``: a customer's message was stored (by the intake)."""

    customer_id: int
    new_conversation: bool
    reopened: bool
    has_attachments: bool


class MessageEdited(ConversationMessage):
    """``message.edited``: the customer changed the words of a stored message."""


class MessageSent(ConversationMessage):
    """``message.sent``: a reply was written (queued for delivery)."""

    author_id: int | None


class MessageTranslated(ConversationMessage):
    """``message.translated``: an inbound message got its translation for the agents."""


class TranscribeAttachment(AttachmentRef):
    """``attachment.transcribe``: from ``window`` on (a long note continues in a new job)."""

    window: int = 0


class AttachmentStored(TranscribeAttachment, MessageRef):
    """``attachment.stored``: an attachment was fetched and kept on disk."""

    # A stored attachment is transcribed from its first window; not part of the event.
    window: int = Field(default=0, exclude=True)
    kind: str


class AttachmentTranscribed(AttachmentRef, MessageRef):
    """``attachment.transcribed``: a voice note's transcription settled (ok, empty, ...)."""

    status: str


class ConversationStatusChanged(ConversationRef):
    """``conversation.status_changed``: stored as ``{"conversation_id", "from", "to"}``."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    from_: str = Field(alias="from")
    to: str


MESSAGE_RECEIVED = jobs.Event("message.received", MessageReceived)
MESSAGE_EDITED = jobs.Event("message.edited", MessageEdited)
MESSAGE_SENT = jobs.Event("message.sent", MessageSent)
MESSAGE_TRANSLATED = jobs.Event("message.translated", MessageTranslated)
ATTACHMENT_STORED = jobs.Event("attachment.stored", AttachmentStored)
ATTACHMENT_TRANSCRIBED = jobs.Event("attachment.transcribed", AttachmentTranscribed)
CONVERSATION_STATUS_CHANGED = jobs.Event("conversation.status_changed", ConversationStatusChanged)

FETCH_ATTACHMENT = jobs.JobKind("attachment.fetch", AttachmentRef)
DELIVER_REPLY = jobs.JobKind("outbox.deliver", MessageRef, jobs.URGENT)
TRANSLATE_MESSAGE = jobs.JobKind("message.translate", MessageRef)
TRANSLATE_REPLY = jobs.JobKind("reply.translate", MessageRef, jobs.URGENT)
TRANSCRIBE_ATTACHMENT = jobs.JobKind("attachment.transcribe", TranscribeAttachment)


def deliver_key(message_id: int) -> str:
    """The dedupe key of a reply's ``DELIVER_REPLY`` job: one per reply."""
    return f"deliver:{message_id}"


def translate_reply_key(message_id: int) -> str:
    """The dedupe key of a reply's ``TRANSLATE_REPLY`` job: one per reply."""
    return f"reply-translate:{message_id}"
