"""One customer behind many channel identities: normalisation, linking, races, merge, search."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from crm_core.identity import (
    MergeError,
    contacts_of,
    get_customer,
    identities_of,
    merge_customers,
    search_customers,
)
from crm_core.models import ContactPoint, Customer, Identity
from crm_core.normalize import InvalidContact, normalize_email, normalize_phone
from heliograph.db import Database
from heliograph.models import AuditEvent
from inbox.conversations import messages_of
from inbox.models import Conversation, Message
from tests.utils.db import count
from tests.utils.factories import inbound, receive, store

# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+44 20 7946 0958", None, "+442079460958"),
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("whatsapp:+14155552671", None, "+14155552671"),
        ("tel:+49 30 12345678", None, "+493012345678"),
        ("  +7 912 345-67-89 ", None, "+79123456789"),
        ("+60 12-345 6789", None, "+60123456789"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("00442079460958", "GB", "+442079460958"),
    ],
)
def test_phone_numbers_become_e164(raw: str, region: str | None, e164: str) -> None:
    assert normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    "raw", ["hello", "", "+", "+1 23", "555-2671", "+44 20 7946 0958 0958 0958 1234"]
)
def test_impossible_phone_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidContact, match="phone number"):
        normalize_phone(raw)


def test_emails_are_lower_cased_and_bad_ones_rejected() -> None:
    assert normalize_email("  Rosa.Costa@Example.COM ") == "rosa.costa@example.com"
    assert normalize_email("mailto:Rosa@Example.com") == "rosa@example.com"
    for bad in ("rosa", "rosa@example", "a b@example.com", "@example.com"):
        with pytest.raises(InvalidContact, match="email"):
            normalize_email(bad)


# --- linking identities ----------------------------------------------------------------------


async def test_same_email_on_another_channel_is_the_same_customer(database: Database) -> None:
    first = await receive(database, "m1", "api-rosa", email="Rosa@Example.com", name="Rosa Costa")
    second = await store(
        database, inbound("tg-1", "777001", channel="telegram", email=" rosa@example.COM")
    )
    assert second.customer_id == first.customer_id
    assert second.conversation_id != first.conversation_id  # one thread per channel
    async with database.read_session() as session:
        idents = await identities_of(session, first.customer_id)
        contacts = await contacts_of(session, first.customer_id)
    assert {(i.channel, i.external_id) for i in idents} == {
        ("api", "api-rosa"),
        ("telegram", "777001"),
    }
    assert [(c.kind, c.value) for c in contacts] == [("email", "rosa@example.com")]
    assert await count(database, Customer) == 1


async def test_same_phone_in_another_format_is_the_same_customer(database: Database) -> None:
    first = await receive(database, "m1", "api-ivan", phone="+44 20 7946 0958")
    second = await store(
        database, inbound("wa-1", "wa-ivan", channel="whatsapp", phone="whatsapp:+442079460958")
    )
    other = await receive(database, "m2", "api-olga", phone="+44 20 7946 0000")
    assert second.customer_id == first.customer_id
    assert other.customer_id != first.customer_id
    assert await count(database, Customer) == 2


async def test_a_bad_optional_contact_does_not_lose_the_message(database: Database) -> None:
    result = await receive(database, "m1", "api-x", email="not-an-email", phone="call me")
    async with database.read_session() as session:
        assert [m.text for m in await messages_of(session, result.conversation_id)] == ["hello"]
        assert await contacts_of(session, result.customer_id) == []


async def test_profile_fields_are_filled_but_never_overwritten(database: Database) -> None:
    first = await receive(database, "m1", "api-ana", name="Ana", language="pt")
    await receive(database, "m2", "api-ana", name="Somebody Else", language="en")
    async with database.read_session() as session:
        customer = await get_customer(session, first.customer_id)
    assert (customer.display_name, customer.language) == ("Ana", "pt")


async def test_concurrent_first_messages_make_one_customer(pg_database: Database) -> None:
    results = await asyncio.gather(
        *(
            store(pg_database, inbound(f"burst-{i}", "racer", f"part {i}", email="r@x.example"))
            for i in range(20)
        )
    )
    assert len({r.customer_id for r in results}) == 1
    assert len({r.conversation_id for r in results}) == 1
    assert not any(r.duplicate for r in results)
    assert await count(pg_database, Customer) == 1
    assert await count(pg_database, Identity) == 1
    assert await count(pg_database, ContactPoint) == 1
    assert await count(pg_database, Conversation) == 1
    assert await count(pg_database, Message) == 20


# --- merge -------------------------------------------------------------------------------------


async def _two_customers(database: Database) -> tuple[int, int, dict[str, int]]:
    """Rosa on api (+ email); her duplicate 'R. Costa' on api and telegram (same phone)."""
    a = await receive(database, "a1", "rosa-api", name="Rosa Costa", email="rosa@example.com")
    b = await receive(database, "b1", "rc-api", name="R. Costa", phone="+351 912 345 678")
    b_tg = await store(
        database, inbound("b2", "555", "olá", channel="telegram", phone="+351912345678")
    )
    assert b_tg.customer_id == b.customer_id
    return (
        a.customer_id,
        b.customer_id,
        {"a_api": a.conversation_id, "b_api": b.conversation_id, "b_tg": b_tg.conversation_id},
    )


async def test_merge_moves_everything_and_folds_open_threads(database: Database) -> None:
    a, b, convs = await _two_customers(database)
    async with database.session() as session:
        survivor = await merge_customers(session, a, b, actor="member:7")
        await session.commit()
    assert survivor.id == a

    async with database.read_session() as session:
        idents = await identities_of(session, a)
        contacts = await contacts_of(session, a)
        conversations = (
            (await session.execute(select(Conversation).where(Conversation.customer_id == a)))
            .scalars()
            .all()
        )
        a_api_texts = [m.text for m in await messages_of(session, convs["a_api"])]
        audit = (await session.execute(select(AuditEvent))).scalars().all()
        old_id_resolves_to = (await get_customer(session, b)).id
        merged = await session.get(Customer, b)
    assert {i.external_id for i in idents} == {"rosa-api", "rc-api", "555"}
    assert {(c.kind, c.value) for c in contacts} == {
        ("email", "rosa@example.com"),
        ("phone", "+351912345678"),
    }
    by_id = {c.id: c for c in conversations}
    assert set(by_id) == set(convs.values())
    # Both were open on 'api': one thread now, holding both customers' messages.
    assert by_id[convs["a_api"]].status == "open"
    assert by_id[convs["b_api"]].status == "resolved"
    assert sorted(a_api_texts) == ["hello", "hello"]
    assert by_id[convs["b_tg"]].status == "open"  # the only telegram thread simply moves
    assert old_id_resolves_to == a
    assert merged is not None and merged.merged_into_id == a
    assert len(audit) == 1
    assert (audit[0].action, audit[0].actor, audit[0].subject_id) == (
        "customer.merge",
        "member:7",
        a,
    )
    assert audit[0].details["source_id"] == b
    assert audit[0].details["moved"]["conversations_folded"] == 1

    # The next message from B's old identity lands in the survivor's open api thread.
    again = await receive(database, "b3", "rc-api")
    assert (again.customer_id, again.conversation_id) == (a, convs["a_api"])


async def test_merge_into_itself_or_twice_is_refused(database: Database) -> None:
    a = (await receive(database, "a1", "one")).customer_id
    b = (await receive(database, "b1", "two")).customer_id
    async with database.session() as session:
        with pytest.raises(MergeError, match="into itself"):
            await merge_customers(session, a, a, actor="t")
        await merge_customers(session, a, b, actor="t")
        await session.commit()
    async with database.session() as session:
        with pytest.raises(MergeError, match=f"already merged into {a}"):
            await merge_customers(session, a, b, actor="t")
        # B's old id now means A: folding A into "B" is folding A into itself.
        with pytest.raises(MergeError, match="into itself"):
            await merge_customers(session, b, a, actor="t")
    async with database.read_session() as session:
        audits = (await session.execute(select(func.count()).select_from(AuditEvent))).scalar()
    assert audits == 1


# --- search ----------------------------------------------------------------------------------


async def test_search_by_name_email_phone_and_channel_id(database: Database) -> None:
    rosa = (
        await receive(
            database,
            "m1",
            "ext-rosa-42",
            name="Rosa Costa",
            email="Rosa@Example.com",
            phone="+44 20 7946 0958",
        )
    ).customer_id
    roberto = (await receive(database, "m2", "ext-rob", name="Roberto Rossi")).customer_id
    await receive(database, "m3", "ext-ivan", name="Ivan Petrov", email="ivan@example.com")

    async def ids(q: str) -> list[int]:
        async with database.read_session() as session:
            return [c.id for c in await search_customers(session, q)]  # type: ignore[misc]

    assert await ids("rosa") == [rosa]
    assert await ids("  ROSA c") == [rosa]
    assert sorted(await ids("ro")) == sorted([rosa, roberto])
    assert await ids("rosa@EXAMPLE.com") == [rosa]
    for phone in ("+44 20 7946 0958", "+44-20-7946-0958", "442079460958", "+44 (20) 79460958"):
        assert await ids(phone) == [rosa], phone
    assert await ids("ext-rosa-42") == [rosa]
    assert await ids("nobody") == []
    assert await ids("   ") == []
    assert await ids("+44 20 7946 0000") == []


async def test_search_after_merge_finds_only_the_survivor(database: Database) -> None:
    a = (await receive(database, "a1", "one", name="Maria Silva")).customer_id
    b = (
        await receive(database, "b1", "two", name="Maria S.", email="maria@example.com")
    ).customer_id
    async with database.session() as session:
        await merge_customers(session, a, b, actor="t")
        await session.commit()
    async with database.read_session() as session:
        assert [c.id for c in await search_customers(session, "maria")] == [a]
        assert [c.id for c in await search_customers(session, "maria@example.com")] == [a]
        assert [c.id for c in await search_customers(session, "two")] == [a]


async def test_a_customer_who_writes_again_is_reachable_again(database: Database) -> None:
    """Someone who blocked the bot, unblocked it and wrote must get our replies again."""
    from crm_core.identity import mark_unreachable
    from tests.utils.factories import receive

    await receive(database, "reach-1", "cust-reach")
    async with database.session() as session:
        assert await mark_unreachable(session, "api", "cust-reach", "bot was blocked by the user")
        await session.commit()
    await receive(database, "reach-2", "cust-reach")
    async with database.read_session() as session:
        identity = (
            await session.execute(select(Identity).where(Identity.external_id == "cust-reach"))
        ).scalar_one()
    assert identity.unreachable_reason is None
