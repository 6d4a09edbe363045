"""Handoff notices, escalations and intervention alerts, in the agents' Slack threads.

``handoff.created``: the receiver's thread gets the context package (the previous agent's
note and notes, the summary, the last messages, open interventions) with an Acknowledge
button (``surfaces.slack_inbound`` handles it and marks the notice acknowledged).
``handoff.escalated``: a line in the conversation's current thread. ``intervention.opened``:
in the thread of each open conversation with the customer (and the card is refreshed),
else in the owner's DM. ``intervention.rule_failed`` (``crm_core.rule_failures``, at most
once per rule per hour): in each active admin's DM, which rule was skipped and why.
"""

from __future__ import annotations

from typing import Any

from channels.slack import escape as slack_escape
from crm_core.bus import (
    INTERVENTION_OPENED,
    INTERVENTION_RULE_FAILED,
    InterventionOpened,
    RuleFailed,
)
from handoff import reads as handoff_reads
from handoff.bus import HANDOFF_CREATED, HANDOFF_ESCALATED, HandoffCreated, HandoffEscalated
from handoff.models import Handoff
from heliograph import jobs
from heliograph.db import get_db
from inbox import reads as inbox_reads
from routing import reads as routing_reads
from surfaces.slack_posts import member_slack_id, open_dm, post_once
from surfaces.slack_threads import (
    current_threads,
    enabled,
    refresh_card,
    target_channel,
    thread_of,
)

HANDOFF = jobs.JobKind("slack_agents.handoff", HandoffCreated)
ESCALATED = jobs.JobKind("slack_agents.escalated", HandoffEscalated)
INTERVENTION = jobs.JobKind("slack_agents.intervention", InterventionOpened)
RULE_FAILED = jobs.JobKind("slack_agents.rule_failed", RuleFailed)
LISTENERS: tuple[tuple[jobs.Event[Any], jobs.JobKind[Any]], ...] = (
    (HANDOFF_CREATED, HANDOFF),
    (HANDOFF_ESCALATED, ESCALATED),
    (INTERVENTION_OPENED, INTERVENTION),
    (INTERVENTION_RULE_FAILED, RULE_FAILED),
)


def listen() -> None:
    """Subscribe the alert listeners (idempotent); only with agent threads on, like
    ``slack_threads.listen``."""
    for event, kind in LISTENERS:
        jobs.subscribe(event, kind)


def handoff_text(row: Handoff, sender: str) -> str:
    context = row.context or {}
    lines = [f":handshake: *Handoff from {slack_escape(sender)}* — {slack_escape(row.reason)}"]
    if context.get("handoff_note"):
        lines.append(f"*Note:* {slack_escape(context['handoff_note'])}")
    if context.get("summary"):
        lines.append(slack_escape(context["summary"]))
    for said in (context.get("messages") or [])[-3:]:
        lines.append(f"> *{slack_escape(said['author'])}:* {slack_escape(said['text'])}")
    for note in context.get("notes") or []:
        lines.append(f":memo: {slack_escape(note['author'])}: {slack_escape(note['text'])}")
    for i in context.get("interventions") or []:
        lines.append(f":bell: {slack_escape(i['rule'])}: {slack_escape(i['reason'])}")
    return "\n".join(lines)


def handoff_blocks(text: str, handoff_id: int, acknowledged_by: str | None) -> list[Any]:
    section = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if acknowledged_by:
        done = f":white_check_mark: Acknowledged by {slack_escape(acknowledged_by)}"
        return [section, {"type": "context", "elements": [{"type": "mrkdwn", "text": done}]}]
    button = {
        "type": "button",
        "action_id": "hg_ack",
        "text": {"type": "plain_text", "text": "Acknowledge"},
        "style": "primary",
        "value": str(handoff_id),
    }
    return [section, {"type": "actions", "elements": [button]}]


@jobs.handler(HANDOFF)
async def on_handoff(payload: HandoffCreated) -> None:
    """The receiver reads the context package in their thread and acknowledges there."""
    if not enabled() or payload.to_member_id is None:
        return
    conversation_id, receiver = payload.conversation_id, payload.to_member_id
    if await target_channel(receiver) is None:
        return  # the receiver does not work from Slack
    async with get_db().read_session() as session:
        thread = await thread_of(session, conversation_id, receiver)
        if thread is None or thread.ts is None:
            raise jobs.RetryLater("the receiver's thread is not posted yet")
        row = await handoff_reads.handoff(session, payload.handoff_id)
        if row is None:
            return
        names = await routing_reads.member_names(
            session, {row.from_member_id} if row.from_member_id else set()
        )
        text = handoff_text(row, names.get(row.from_member_id or 0, "the queue"))
    await post_once(
        f"handoff:{row.id}",
        thread.channel,
        text,
        thread_ts=thread.ts,
        blocks=handoff_blocks(text, row.id, None),  # type: ignore[arg-type]
    )


@jobs.handler(ESCALATED)
async def on_escalated(payload: HandoffEscalated) -> None:
    if not enabled():
        return
    async with get_db().read_session() as session:
        threads = await current_threads(session, payload.conversation_id)
    reason = slack_escape(payload.reason or "not acknowledged")
    minutes = int(payload.waited_s // 60)
    for thread in threads:
        if thread.ts:
            await post_once(
                f"escalated:{payload.handoff_id}:{thread.id}",
                thread.channel,
                f":rotating_light: Handoff #{payload.handoff_id} escalated after "
                f"{minutes} min: {reason}",
                thread_ts=thread.ts,
            )


def intervention_text(payload: InterventionOpened) -> str:
    title = payload.title or payload.rule.replace("_", " ")
    lines = [
        f":bell: *Intervention: {slack_escape(title)}* for "
        f"{slack_escape(payload.customer_name or 'the customer')}",
        slack_escape(payload.reason),
        f"Suggested: “{slack_escape(payload.suggested_message)}”",
    ]
    if payload.auto_send:
        lines.append(f"Goes out automatically after {payload.send_after or 'now'}.")
    return "\n".join(line for line in lines if line)


@jobs.handler(INTERVENTION)
async def on_intervention(payload: InterventionOpened) -> None:
    """In the thread of each open conversation with the customer, else the owner's DM."""
    if not enabled():
        return
    text, key = intervention_text(payload), f"intervention:{payload.intervention_id}"
    async with get_db().read_session() as session:
        found = await inbox_reads.open_conversations_of(session, [payload.customer_id])
        threads = []
        for conversation, _ in sorted(found[payload.customer_id], key=lambda f: f[0].id or 0):
            # where its assignee works on it now (as slack_threads.current_threads)
            thread = await thread_of(session, conversation.id, conversation.assignee_id)  # type: ignore[arg-type]
            if thread is not None and thread.ts:
                threads.append(thread)
    for thread in threads:
        await post_once(f"{key}:{thread.id}", thread.channel, text, thread_ts=thread.ts)
        await refresh_card(thread.conversation_id)
    user = None if threads else await member_slack_id(payload.owner_id)
    if user is not None:
        await post_once(f"{key}:dm", await open_dm(user), text)


def rule_failed_text(payload: RuleFailed) -> str:
    rule = payload.rule
    title = slack_escape(payload.title or rule)
    return (
        f":warning: *Intervention rule “{title}” (`{slack_escape(rule)}`) failed and was "
        "skipped*; the other rules ran.\n"
        f"> {slack_escape(payload.reason or 'no reason given')}\n"
        f"Every pass tries it again. Fix its setting with `PATCH /api/v1/intervention-rules/"
        f"{slack_escape(rule)}`; the next alert about it comes an hour from now at the earliest."
    )


@jobs.handler(RULE_FAILED)
async def on_rule_failed(payload: RuleFailed) -> None:
    """Each active admin who is in the workspace reads it in their DM with the app."""
    if not enabled():
        return
    async with get_db().read_session() as session:
        admins = await routing_reads.active_members(session, ("admin",))
        admin_ids = [m.id for m in admins]
    text = rule_failed_text(payload)
    for member_id in admin_ids:
        user = await member_slack_id(member_id)
        if user is not None:
            key = f"rule-failed:{payload.rule}:{payload.at}:{member_id}"
            await post_once(key, await open_dm(user), text)


if enabled():  # the process's settings, read once at start-up
    listen()
