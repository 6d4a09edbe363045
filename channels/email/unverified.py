"""Mail whose sender did not authenticate (``auth.py``): kept apart, and the agent told why.

It is stored under an identity of its own, ``unverified:<address>`` on the email channel,
with no contact point, so it never finds the profile that owns the address (by identity
or by contact) and never gives its address to a new profile; a second mail from it joins
the same apart profile. Its thread key carries the same prefix, so it never joins a
verified thread either, even one it names in In-Reply-To. The conversation is marked
``unverified_sender`` and each such mail adds a note saying what failed: the message carries
the note (``InboundMessage.unverified_note``) and ``inbox.intake`` stores both with it, in
one transaction, when the mail is new.

An agent who decides it is really the customer merges the two profiles
(``POST /api/v1/customers/{id}/merge``): the conversation moves, still marked, and later
unverified mail from the address then lands with that customer, but in conversations of
its own, still marked and noted, never silently in a verified thread.
"""

from __future__ import annotations

from dataclasses import replace

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.email.auth import SenderCheck
from crm_core.identity import SenderProfile, owner_of
from inbox.ingest import InboundMessage

CHANNEL = "email"
PREFIX = "unverified:"
MAX_KEY = 255  # identity.external_id and conversation.thread_key widths


def unverified_key(value: str) -> str:
    return value if value.startswith(PREFIX) else (PREFIX + value)[:MAX_KEY]


def verified_key(value: str) -> str:
    """A verified mail in a thread that began unverified joins the plain thread."""
    return value.removeprefix(PREFIX)


def mail_address(recipient_id: str) -> str:
    """The address an identity's external id stands for (replies to an unverified thread
    go to the address itself: its real owner, never whoever forged it)."""
    return recipient_id.removeprefix(PREFIX)


def kept_apart(msg: InboundMessage) -> InboundMessage:
    """``msg`` under the apart identity: no email hint, so no profile is found by it."""
    sender = msg.sender
    return replace(
        msg,
        sender=SenderProfile(
            channel=sender.channel,
            external_id=unverified_key(sender.external_id),
            name=sender.name,
        ),
        thread_key=unverified_key(msg.thread_key),
    )


async def kept_apart_with_note(
    session: AsyncSession, msg: InboundMessage, address: str, check: SenderCheck
) -> InboundMessage:
    """``msg`` kept apart, carrying the note the intake adds (with the ``unverified_sender``
    mark) when it is stored new. The note is worked out before storing: whose address the
    mail claims, and whether the apart profile was merged into them already."""
    apart = kept_apart(msg)
    owner = await owner_of(session, CHANNEL, address, ("email", address))
    customer = await owner_of(session, CHANNEL, apart.sender.external_id)
    return replace(apart, unverified_note=note_text(address, check, owner, customer))


def note_text(address: str, check: SenderCheck, owner: int | None, customer_id: int | None) -> str:
    """What the agent is told. ``customer_id``: the apart profile's customer (``None`` for
    the first mail from the address, whose profile is new and so is nobody's owner yet)."""
    why = check.summary if check.checked else "no Authentication-Results header"
    text = f"Unverified sender: {why}. This mail says it is from {address}, but "
    if owner is None:
        return text + "the sender's domain did not confirm it, so it is kept apart."
    if owner == customer_id:  # an agent merged an earlier apart profile into the owner's
        return text + "the sender's domain did not confirm it, so it has a conversation of its own."
    return (
        f"{text}the sender's domain did not confirm it, so it is kept apart from customer "
        f"{owner}, who has this address. If it is really them, merge this conversation's "
        "customer into theirs."
    )
