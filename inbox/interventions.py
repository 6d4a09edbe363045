"""Where the CRM meets the inbox: interventions sent to customers, owners, GDPR, timeline.

- ``intervention.send`` (crm_core.interventions enqueues it for rules that send on their
  own): outside the customer's quiet hours, on the channel their preferences and consent
  allow, the suggested message goes out as a ``system`` reply through the outbox, in the
  customer's open conversation on that channel or a new one (left ``pending``: it waits
  for the customer, and their answer routes as any inbound message does).
- The owner of a customer, for a new intervention: the agent of their latest conversation.
- The CRM's entries (events, journey, interventions) in the customer timeline.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core import interventions as crm
from crm_core import timeline as crm_timeline
from crm_core.bus import (
    SEND_INTERVENTION,
    InterventionRef,
)
from crm_core.identity import add_identity, contacts_of, identities_of
from crm_core.models import Customer, Identity, Intervention
from crm_core.profile import choose_identity, quiet_until
from crm_core.reads import customers_by_id
from heliograph import jobs
from heliograph.db import get_db, is_unique_violation, utcnow
from heliograph.texts import Text, message
from inbox import conversations, outbox, timeline
from inbox.models import Conversation


class _Skip(Exception):
    """The message cannot go out; the intervention stays open for an agent, with why."""


async def _email_identity(session: AsyncSession, customer: Customer) -> Identity | None:
    """A customer known only by an email address (from an activity event) can be written
    to on the email channel: its identity is the lower-cased address (channels/email)."""
    if customer.preferred_channel not in (None, "email"):
        return None
    if "email" not in outbox.sender_channels():
        return None
    email = next(
        (c.value for c in await contacts_of(session, customer.id) if c.kind == "email"), None
    )  # type: ignore[arg-type]
    if email is None:
        return None
    # None: the address belongs to another profile's identity, not ours to use.
    return await add_identity(session, customer.id, "email", email)  # type: ignore[arg-type]


async def _recipient(session: AsyncSession, customer: Customer) -> Identity:
    identities = await identities_of(session, customer.id)  # type: ignore[arg-type]
    chosen, why = choose_identity(identities, customer.preferred_channel)
    if chosen is None and not any(i.channel == "email" for i in identities):
        chosen = await _email_identity(session, customer)
    if chosen is None:
        raise _Skip(why)
    if chosen.channel not in outbox.sender_channels():
        raise _Skip(Text("no channel adapter can send on %(channel)s", channel=chosen.channel))
    return chosen


async def _conversation(
    session: AsyncSession, customer: Customer, to: Identity
) -> tuple[Conversation, bool]:
    for _ in range(3):
        active = (
            await session.execute(
                select(Conversation).where(
                    Conversation.customer_id == customer.id,
                    Conversation.channel == to.channel,
                    Conversation.thread_key == "",
                    Conversation.status != "resolved",
                )
            )
        ).scalar()
        if active is not None:
            return active, False
        try:
            async with session.begin_nested():
                created = Conversation(
                    customer_id=customer.id,  # type: ignore[arg-type]
                    identity_id=to.id,
                    channel=to.channel,
                    status="pending",
                    language=customer.language,
                )
                session.add(created)
                await session.flush()
                return created, True
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
    raise RuntimeError(f"could not open a conversation for customer {customer.id}")


async def _send(session: AsyncSession, found: Intervention, customer: Customer) -> None:
    to = await _recipient(session, customer)
    conversation, created = await _conversation(session, customer, to)
    message = await conversations.reply(
        session,
        conversation.id,
        found.suggested_message,
        None,
        author_type="system",  # type: ignore[arg-type]
    )
    if created:
        conversation.status = "pending"  # ours to start; it waits for the customer
    await crm.record_sent(session, found, message.id, to.channel)  # type: ignore[arg-type]


@jobs.handler(SEND_INTERVENTION)
async def send_intervention(payload: InterventionRef) -> None:
    intervention_id = payload.intervention_id
    async with get_db().session() as session:
        try:
            found = await crm.get_intervention(session, intervention_id)
        except crm.InterventionNotFound:
            return  # erased
        if found.state != "open" or found.send_status != "scheduled":
            return  # done, dismissed or sent already (a replayed job)
        customer = (await customers_by_id(session, [found.customer_id])).get(found.customer_id)
        if customer is None or customer.erased_at is not None:
            return
        now = utcnow()
        until = quiet_until(customer, now)
        if until is not None:
            crm.record_send_deferred(found, until)
            await session.commit()
            raise jobs.Defer("the customer's quiet hours", (until - now).total_seconds())
        try:
            await _send(session, found, customer)
        except _Skip as why:
            crm.record_send_skipped(found, str(why))
        await session.commit()
    jobs.wake_workers()


async def latest_agents(session: AsyncSession, customer_ids: list[int]) -> dict[int, int]:
    """Owner resolver: the assignee of each customer's most recent conversation."""
    rows = await session.execute(
        select(Conversation.customer_id, Conversation.assignee_id)  # type: ignore[call-overload]
        .where(
            Conversation.customer_id.in_(customer_ids),  # type: ignore[attr-defined]
            Conversation.assignee_id.is_not(None),  # type: ignore[union-attr]
        )
        .order_by(Conversation.last_message_at)
    )
    return {cid: member for cid, member in rows.all()}  # the latest wins


async def crm_timeline_entries(
    session: AsyncSession, customer_id: int, before: Any, limit: int
) -> list[timeline.TimelineEntry]:
    return [
        timeline.TimelineEntry(e.at, e.kind, None, e.summary, e.data)
        for e in await crm_timeline.crm_entries(session, customer_id, before, limit)
    ]


crm.owner_resolvers.append(latest_agents)
timeline.timeline_sources.append(crm_timeline_entries)


class NoChannel(ValueError):
    """No channel may carry a message to the customer (the message says why)."""


async def conversation_to_write(session: AsyncSession, customer: Customer) -> Conversation:
    """Where an agent writes to a customer by hand: the channel an intervention would take
    (preferred channel, consent, reachability), in the open conversation there or a new one
    (``pending``). Raises ``NoChannel`` with the reason when there is none."""
    try:
        to = await _recipient(session, customer)
    except _Skip as exc:
        raise NoChannel(message(exc)) from exc
    conversation, _created = await _conversation(session, customer, to)
    return conversation
