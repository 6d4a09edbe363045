"""The customer card an agent sees at the top of a conversation, on any chat surface.

``customer_card`` reads it once (the customer line is ``handoff.context.customer_line``,
the same one a context package carries); ``lines()`` is the plain-text form (Telegram, and
Slack's notification text), ``slack_blocks()`` the Block Kit form with the buttons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.slack import escape as slack_escape
from crm_core.identity import get_customer
from crm_core.interventions import InterventionFilter, list_interventions
from handoff.context import customer_line
from heliograph.db import utcnow
from inbox.conversations import get_conversation
from routing import reads as routing_reads

CHANNEL_NAMES = {
    "whatsapp": "WhatsApp",
    "whatsapp_cloud": "WhatsApp",
    "telegram": "Telegram",
    "sms": "SMS",
    "email": "Email",
    "slack": "Slack",
    "api": "API",
}


@dataclass(frozen=True)
class CardIntervention:
    id: int
    title: str
    suggested_message: str


@dataclass(frozen=True)
class CustomerCard:
    conversation_id: int
    customer_id: int
    name: str
    channel: str
    language: str | None
    timezone: str | None
    local_time: str | None  # "HH:MM" in the customer's zone, when it is known
    journey_stage: str
    lifetime_value: str
    status: str
    subject: str | None = None
    assignee: str | None = None
    assignee_slack_id: str | None = None
    interventions: list[CardIntervention] = field(default_factory=list)

    @property
    def channel_name(self) -> str:
        return CHANNEL_NAMES.get(self.channel, self.channel)

    def headline(self) -> str:
        return f"{self.name} on {self.channel_name} (conversation #{self.conversation_id})"

    def facts(self) -> list[str]:
        local = (
            f"{self.local_time} their time ({self.timezone})"
            if self.local_time
            else "their time unknown"
        )
        return [
            f"Language: {self.language or 'unknown'} · {local}",
            f"Journey: {self.journey_stage} · Lifetime value: {self.lifetime_value}",
            f"Status: {self.status} · Assignee: {self.assignee or 'nobody yet'}",
        ]

    def intervention_lines(self) -> list[str]:
        if not self.interventions:
            return ["Open interventions: none"]
        return ["Open interventions:"] + [
            f"• {i.title} (#{i.id}): suggested “{i.suggested_message}”" for i in self.interventions
        ]

    def lines(self) -> list[str]:
        """The card as plain text, one fact a line."""
        subject = [f"Subject: {self.subject}"] if self.subject else []
        return [self.headline(), *subject, *self.facts(), *self.intervention_lines()]


async def customer_card(
    session: AsyncSession, conversation_id: int, now: datetime | None = None
) -> CustomerCard:
    conversation = await get_conversation(session, conversation_id)
    customer = await get_customer(session, conversation.customer_id)
    line = customer_line(customer, now or utcnow())
    assignee = await routing_reads.member(session, conversation.assignee_id)
    opened = await list_interventions(
        session, InterventionFilter(state="open", customer_id=customer.id, limit=5)
    )
    return CustomerCard(
        conversation_id=conversation_id,
        customer_id=customer.id,  # type: ignore[arg-type]
        name=str(line["name"]),
        channel=conversation.channel,
        # The conversation's language is the one replies go out in; the profile's otherwise.
        language=conversation.language or customer.language,
        timezone=customer.timezone,
        local_time=line["local_time"],
        journey_stage=customer.journey_stage.capitalize(),
        lifetime_value=str(line["lifetime_value"] or "0"),
        status=conversation.status,
        subject=conversation.subject,
        assignee=assignee.name if assignee else None,
        assignee_slack_id=assignee.slack_user_id if assignee else None,
        interventions=[
            CardIntervention(
                i.id,  # type: ignore[arg-type]
                str((i.details or {}).get("title") or i.rule.replace("_", " ")),
                i.suggested_message,
            )
            for i in reversed(opened)
        ],
    )


# --- Slack Block Kit (https://docs.slack.dev/reference/block-kit/blocks) ---------------

ACTIONS = ("claim", "resolve", "handoff")
SNOOZE_HOURS = (1, 4, 24)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def slack_blocks(card: CustomerCard) -> list[dict[str, Any]]:
    """The card and its buttons; each button's value is the conversation id."""
    value = str(card.conversation_id)
    who = slack_escape(card.assignee or "nobody yet")
    if card.assignee_slack_id:  # a mention: the assignee sees it in their Slack
        who = f"<@{card.assignee_slack_id}>"
    facts = [slack_escape(f) for f in card.facts()[:-1]]
    body = "\n".join([*facts, f"Status: {card.status} · Assignee: {who}"])
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _mrkdwn(f"*{slack_escape(card.headline())}*")},
    ]
    if card.subject:
        blocks.append({"type": "context", "elements": [_mrkdwn(slack_escape(card.subject))]})
    blocks += [
        {"type": "section", "text": _mrkdwn(body)},
        {"type": "section", "text": _mrkdwn(slack_escape("\n".join(card.intervention_lines())))},
    ]
    if card.status == "resolved":
        return blocks
    buttons: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": f"hg_{name}",
            "text": {"type": "plain_text", "text": label},
            "value": value,
            **({"style": "primary"} if name == "claim" else {}),
        }
        for name, label in (("claim", "Claim"), ("resolve", "Resolve"), ("handoff", "Hand off…"))
    ]
    buttons.append(
        {
            "type": "static_select",
            "action_id": "hg_snooze",
            "placeholder": {"type": "plain_text", "text": "Snooze…"},
            "options": [
                {
                    "text": {"type": "plain_text", "text": f"{h} h"},
                    "value": f"{value}:{h}",
                }
                for h in SNOOZE_HOURS
            ],
        }
    )
    blocks.append({"type": "actions", "block_id": f"hg_card_{value}", "elements": buttons})
    return blocks
