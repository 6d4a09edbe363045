"""Every table and file that can hold personal data, and what GDPR erasure does to each.

This is the list the erasure (``crm_core.gdpr`` and the ``*/gdpr.py`` hooks) is checked
against: ``tests/crm_core/test_personal_data.py`` fails when a table, or a text, string
or JSON column, is added without a line here, so a new copy of a customer's words
cannot appear unnoticed. Tables are named by their table name (crm_core imports nothing
above it).

Each text column is one of:

- ``personal``: the customer's own data, found through their ids and erased (blanked or
  deleted, as ``erasure`` says), and in the export's ``export`` section;
- ``mentions``: free text tied to no customer by a key (job payloads, logs, audit
  details) that may name one: erasure searches it for the customer's names, contacts and
  channel ids and replaces each with ``[erased]`` (``crm_core.gdpr_mentions``); the
  export lists what it found there under ``mentions``;
- ``team``: about the team's own members, not customers (kept);
- ``other``: not personal (codes, states, provider ids, settings, the catalogue).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PERSONAL, MENTIONS, TEAM, OTHER = "personal", "mentions", "team", "other"
KINDS = (PERSONAL, MENTIONS, TEAM, OTHER)


@dataclass(frozen=True)
class Table:
    erasure: str  # what erasing a customer does to these rows, in words
    export: str | None = None  # the export document's section holding them
    personal: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    team: tuple[str, ...] = ()
    other: tuple[str, ...] = ()
    kinds: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = {c: k for k in KINDS for c in getattr(self, k)}
        object.__setattr__(self, "kinds", kinds)


KEPT = "kept: nothing here names a customer"

TABLES: dict[str, Table] = {
    # --- crm_core: the profile and what the platforms reported ------------------------------
    "customer": Table(
        "the row stays (ids elsewhere point at it), blanked; profiles merged into it too",
        "customer",
        personal=(
            "display_name",
            "search_name",
            "language",
            "timezone",
            "country",
            "journey_stage",
            "attributes",
            "interests",
            "preferred_channel",
            "quiet_hours_start",
            "quiet_hours_end",
        ),
    ),
    "identity": Table(
        "deleted",
        "identities",
        personal=("channel", "external_id", "display_name", "unreachable_reason"),
    ),
    "contact_point": Table("deleted", "contact_points", personal=("kind", "value")),
    "activity_event": Table(
        "deleted",
        "activity_events",
        personal=("idempotency_key", "type", "currency", "status", "ref", "data"),
    ),
    "enrollment": Table("deleted", "enrollments", personal=("status", "milestones")),
    "journey_change": Table("deleted", "journey", personal=("from_stage", "to_stage", "rule")),
    "customer_score": Table(
        "deleted",
        "scores",
        personal=(
            "engagement_inputs",
            "health_inputs",
            "progression_inputs",
            "ltv_inputs",
            "activity",
        ),
    ),
    "intervention": Table(
        "deleted",
        "interventions",
        personal=(
            "rule",
            "cause_key",
            "reason",
            "reason_text",
            "suggested_message",
            "state",
            "send_status",
            "send_note",
            "details",
        ),
        team=("resolved_by",),
    ),
    "program": Table(
        KEPT, other=("code", "name", "category", "currency", "description"), team=("instructor",)
    ),
    "intervention_rule": Table(KEPT, other=("name", "params", "message"), team=("updated_by",)),
    # --- the kernel: jobs, the audit log, idempotent answers ---------------------------------
    "job": Table(
        "every job (pending, running, done or dead) whose payload names one of the customer's"
        " ids (customer, conversation, message, attachment, note, handoff, intervention,"
        " assignment) is deleted; the rest are searched for mentions",
        "jobs",
        mentions=("payload", "last_error"),
        other=("kind", "status", "locked_by", "dedupe_key", "request_id"),
    ),
    "audit_event": Table(
        "kept (who did what, when); details and actor searched for mentions; the erasure's"
        " own row holds only ids and counts",
        "audit",
        mentions=("actor", "details"),
        other=("action", "subject_type"),
    ),
    "idempotency_record": Table(
        "the customer's records stay (a retry still sends nothing twice) with the stored"
        " answer cut to its ids",
        "idempotency_records",
        personal=("response",),
        team=("scope",),
        other=("key", "fingerprint"),
    ),
    # --- inbox -------------------------------------------------------------------------------
    "conversation": Table(
        "kept for the team's statistics; subject and thread key (an email's Message-ID, a"
        " Slack channel) blanked, the identity unlinked",
        "conversations",
        personal=("subject", "thread_key"),
        other=("channel", "status", "priority", "language", "language_source", "topic_tags"),
    ),
    "message": Table(
        "kept for the counts and timings; every word, the provider's raw payload, the"
        " delivery error and the provider's ids (a Telegram one holds the chat id) blanked",
        "conversations",
        personal=(
            "text",
            "original_text",
            "raw",
            "delivery_error",
            "provider_message_id",
            "external_id",
        ),
        other=(
            "channel",
            "direction",
            "author_type",
            "original_language",
            "translation_status",
            "translation_note",
            "delivery_status",
        ),
    ),
    "attachment": Table(
        "kept as a stub; the file (see FILES), its name, links and transcript go",
        "conversations",
        personal=("filename", "url", "provider_file_id", "storage_path", "transcript"),
        other=(
            "kind",
            "direction",
            "content_type",
            "transcript_language",
            "transcript_status",
            "transcript_note",
        ),
    ),
    "note": Table("kept as a stub; the text blanked", "conversations", personal=("text",)),
    # A provider's status callback kept until the reply it names has the provider's id (at
    # most a day): keyed by that id, no customer's; a bounce's reason may quote an address.
    "early_status": Table(
        "kept until applied to its reply, or a day; the provider's error searched for mentions",
        mentions=("error",),
        other=("channel", "external_id", "status"),
    ),
    # The team's saved replies: its own words with {{placeholders}}, never a customer's.
    "canned_response": Table(KEPT, team=("shortcut", "title", "text"), other=("language",)),
    # --- transcription: the translation cache is keyed by the text's hash --------------------
    "translation_cache": Table(
        "entries whose source or translation is one of the customer's messages, notes or"
        " transcripts (or a line of one) are deleted",
        "translations",
        personal=("text_hash", "translated"),
        other=("provider", "source", "target"),
    ),
    # --- routing -----------------------------------------------------------------------------
    "team_member": Table(
        KEPT,
        team=(
            "name",
            "email",
            "role",
            "timezone",
            "region",
            "weekly_hours",
            "exceptions",
            "languages",
            "expertise",
            "availability",
            "slack_user_id",
            "telegram_chat_id",
            "password_hash",
        ),
        other=("ui_language", "ui_theme"),
    ),
    "member_invite": Table(KEPT, team=("token_hash",)),
    "api_token": Table(KEPT, team=("token_hash", "label")),
    "assignment": Table(
        "kept (routing's history and statistics); the reason, which can quote a handoff"
        " note, blanked",
        "assignments",
        personal=("reason", "reason_text"),
        other=("kind",),
    ),
    "routing_wait": Table(KEPT + " (routing's own words about the queue)", other=("reason",)),
    # --- handoff -----------------------------------------------------------------------------
    "handoff": Table(
        "kept (who handed what to whom, acknowledgement times); the context package (name,"
        " messages, notes, interventions) and the reason blanked",
        "handoffs",
        personal=("reason", "reason_text", "context"),
        other=("kind", "state"),
    ),
    "handoff_shift_end": Table(KEPT),
    # --- the team's Slack and Telegram surfaces: only ids of posts (the words were sent
    # to Slack or Telegram, not kept here) ------------------------------------------------
    "slack_agent_thread": Table(KEPT + " (ids of Slack posts)", other=("channel", "ts")),
    "slack_agent_post": Table(
        KEPT + " (ids of Slack posts)", other=("key", "channel", "thread_ts", "ts", "state")
    ),
    "slack_agent_event": Table(KEPT + " (ids of Slack posts)", other=("key", "kind")),
    "telegram_agent_message": Table(
        KEPT + " (ids of Telegram messages)", team=("chat_id",), other=("kind", "dedupe_key")
    ),
    "telegram_agent_update": Table(
        "kept (what a member's chat asked); the bot's answer searched for mentions",
        mentions=("outcome",),
        team=("chat_id",),
        other=("command",),
    ),
    "telegram_link_code": Table(KEPT, team=("code_hash", "used_by_chat")),
}

# Files outside the database.
FILES: dict[str, str] = {
    "media_dir": "attachments fetched from the providers (inbox.media), one file per content"
    " hash: erasure deletes the customer's files, unless another customer's attachment has"
    " the very same bytes; the export lists the attachments (not the bytes)",
}


def mention_columns() -> list[tuple[str, str]]:
    """``(table, column)`` of every column searched for mentions on erasure."""
    return [(name, c) for name, t in TABLES.items() for c in t.mentions]
