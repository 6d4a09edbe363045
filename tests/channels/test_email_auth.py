"""Email senders are authenticated: mail whose SPF/DKIM/DMARC does not pass never joins the
profile or thread of the address it claims; it is kept apart, marked, and the agent is told
why. Recorded mails in ``tests/fixtures/email/`` (``spoofed_reply.eml``: a reply into Jane's
thread from a server Gmail does not vouch for, asking to send her parcel elsewhere)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dkim
import httpx
import pytest

from channels.email import compose
from channels.email.auth import check_sender
from channels.email.settings import EmailSettings
from crm_core.models import ContactPoint, Identity
from heliograph.db import Database
from inbox.models import Conversation, Message, Note
from inbox.outbox import OutboundMessage
from tests.utils.db import rows
from tests.utils.factories import member_with_token
from tests.utils.http import post_email
from tests.utils.mail import GMAIL_FIRST_ID, app_client, email_settings, with_headers
from tests.utils.samples import FIXTURES, email_sample

API = "/api/v1"
FAILED = (
    "mx.google.com; dkim=fail header.i=@gmail.com; spf=softfail smtp.mailfrom=jane.doe@gmail.com;"
    " dmarc=fail header.from=gmail.com"
)


@pytest.fixture
async def mail_any(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    email_settings(monkeypatch, tmp_path)
    async for http in app_client():
        yield http


async def stored(http: httpx.AsyncClient, raw: bytes) -> dict[str, Any]:
    answer = await post_email(http, raw)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["stored"] == 1, body
    return body


async def conversation(http: httpx.AsyncClient, auth: dict[str, str], cid: int) -> dict[str, Any]:
    answer = await http.get(f"{API}/conversations/{cid}", headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_spoofed_reply_is_kept_apart_and_the_agent_sees_why(
    mail_any: httpx.AsyncClient, database: Database
) -> None:
    jane = await stored(mail_any, email_sample("gmail_first"))
    spoof = await stored(mail_any, email_sample("spoofed_reply"))
    _, auth = await member_with_token(database, "lead", "Leo Lead")

    assert spoof["customer_id"] != jane["customer_id"]
    assert spoof["conversation_id"] != jane["conversation_id"]
    apart = await conversation(mail_any, auth, spoof["conversation_id"])
    assert apart["unverified_sender"] is True
    (message,) = apart["messages"]
    assert message["text"].startswith("Hi, I moved.")
    (note,) = apart["notes"]
    assert note["text"].startswith(
        "Unverified sender: SPF softfail, DKIM fail, DMARC fail (mx.google.com). This mail says"
        " it is from jane.doe@gmail.com"
    )
    assert f"customer {jane['customer_id']}, who has this address" in note["text"]
    # Jane's own thread and profile are untouched: one message, no new identity or contact.
    hers = await conversation(mail_any, auth, jane["conversation_id"])
    assert (hers["unverified_sender"], len(hers["messages"]), hers["notes"]) == (False, 1, [])
    assert {(i.customer_id, i.external_id) for i in await rows(database, Identity)} == {
        (jane["customer_id"], "jane.doe@gmail.com"),
        (spoof["customer_id"], "unverified:jane.doe@gmail.com"),
    }
    assert [c.customer_id for c in await rows(database, ContactPoint)] == [jane["customer_id"]]

    # A passing reply in the same thread joins Jane's conversation as before.
    real = await stored(mail_any, email_sample("gmail_reply"))
    assert (real["customer_id"], real["conversation_id"]) == (
        jane["customer_id"],
        jane["conversation_id"],
    )

    # The agent decides it is really Jane: the merge API folds the apart profile into hers.
    merged = await mail_any.post(
        f"{API}/customers/{jane['customer_id']}/merge",
        json={"source_id": spoof["customer_id"]},
        headers=auth,
    )
    assert merged.status_code == 200, merged.text
    moved = await conversation(mail_any, auth, spoof["conversation_id"])
    assert (moved["customer_id"], moved["unverified_sender"]) == (jane["customer_id"], True)


async def test_a_second_unverified_mail_joins_the_apart_thread_not_janes(
    mail_any: httpx.AsyncClient, database: Database
) -> None:
    jane = await stored(mail_any, email_sample("gmail_first"))
    spoof = await stored(mail_any, email_sample("spoofed_reply"))
    again = with_headers(
        email_sample("spoofed_reply"),
        drop=("message-id", "in-reply-to", "references"),
        Message_ID="<20240305221500.77AA@mail.bulk-sender.example>",
        In_Reply_To="<20240305220208.4F1A2B3C4D@mail.bulk-sender.example>",
    )

    second = await stored(mail_any, again)

    assert second["conversation_id"] == spoof["conversation_id"]
    assert (
        len(await rows(database, Message, Message.conversation_id == jane["conversation_id"])) == 1
    )


async def test_a_new_sender_that_fails_gets_a_marked_profile_without_the_address(
    mail_any: httpx.AsyncClient, database: Database
) -> None:
    failing = with_headers(
        email_sample("outlook_reply"),
        drop=("authentication-results",),
        Authentication_Results=FAILED,
    )
    first = await stored(mail_any, failing)
    (conv,) = await rows(database, Conversation)
    assert conv.unverified_sender is True
    assert await rows(database, ContactPoint) == []  # the address is not given to it

    # The real Tom, authenticated, gets a profile of his own, and the address with it.
    real = await stored(mail_any, email_sample("outlook_html_only"))
    assert real["customer_id"] != first["customer_id"]
    (contact,) = await rows(database, ContactPoint)
    assert (contact.customer_id, contact.value) == (
        real["customer_id"],
        "tom.mueller@contoso.example",
    )


async def test_without_authentication_results_mail_joins_unless_required(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No header: the MTA checked nothing, so there is no verdict (auth.py says why)."""
    bare_reply = with_headers(email_sample("gmail_reply"), drop=("authentication-results",))
    email_settings(monkeypatch, tmp_path)
    async for http in app_client():
        jane = await stored(http, email_sample("gmail_first"))
        assert (await stored(http, bare_reply))["conversation_id"] == jane["conversation_id"]

    email_settings(monkeypatch, tmp_path, email_auth_required="true")
    later = with_headers(bare_reply, drop=("message-id",), Message_ID="<later@mail.gmail.com>")
    async for http in app_client():
        kept = await stored(http, later)
    assert kept["customer_id"] != jane["customer_id"]
    (apart,) = await rows(sqlite_database, Conversation, Conversation.unverified_sender.is_(True))
    (note,) = await rows(sqlite_database, Note)
    assert apart.id == kept["conversation_id"] == note.conversation_id
    assert note.text.startswith("Unverified sender: no Authentication-Results header.")


def settings(**values: Any) -> EmailSettings:
    return EmailSettings.get().model_copy(update=values)


def test_only_our_mtas_header_is_believed() -> None:
    """A header the sender wrote (another authserv-id, below ours) counts for nothing."""
    forged = with_headers(
        email_sample("spoofed_reply"),
        drop=("authentication-results",),
        Authentication_Results="mx.google.com; dmarc=pass header.from=gmail.com",
    )
    ours = (
        "mx.heliograph.example; spf=fail smtp.mailfrom=gmail.com; dmarc=fail header.from=gmail.com"
    )
    both = with_headers(forged, Authentication_Results=ours)  # ours is the topmost

    assert check_sender(forged, "jane.doe@gmail.com", settings()).verified
    assert not check_sender(both, "jane.doe@gmail.com", settings()).verified
    pinned = settings(email_authserv_id="mx.heliograph.example", email_auth_required=True)
    assert not check_sender(forged, "jane.doe@gmail.com", pinned).verified  # no header of ours
    verdict = check_sender(both, "jane.doe@gmail.com", pinned)
    assert (verdict.verified, verdict.summary) == (
        False,
        "SPF fail, DKIM none, DMARC fail (mx.heliograph.example)",
    )


@pytest.mark.parametrize(
    ("results", "verified"),
    [
        ("dkim=pass header.d=gmail.com", True),  # no DMARC result: an aligned DKIM pass
        ("spf=pass smtp.mailfrom=bounces@mail.gmail.com", True),  # aligned (subdomain)
        (
            "dkim=pass header.d=bulk-sender.example; spf=pass smtp.mailfrom=x@bulk-sender.example",
            False,
        ),
        ("dkim=pass header.d=gmail.com; dmarc=fail header.from=gmail.com", False),
        ("dmarc=pass header.from=gmail.com", True),
        ("none", False),
    ],
)
def test_the_verdict_follows_dmarc_then_aligned_passes(results: str, verified: bool) -> None:
    raw = (
        f"Authentication-Results: mx.google.com; {results}\nFrom: jane.doe@gmail.com\n\nhi".encode()
    )
    assert check_sender(raw, "jane.doe@gmail.com", settings()).verified is verified
    assert check_sender(raw, "jane.doe@gmail.com", settings(email_auth="off")).verified


def test_verify_checks_dkim_here_and_ignores_headers_in_the_mail() -> None:
    key = (FIXTURES / "email" / "dkim_test_key.pem").read_bytes()
    record = (FIXTURES / "email" / "dkim_test_key.txt").read_bytes().strip()
    body = (
        b"From: Ann <ann@shop.example>\r\nTo: support@heliograph.example\r\n"
        b"Subject: invoice\r\nMessage-ID: <inv-1@shop.example>\r\n\r\nPlease find it attached.\r\n"
    )
    keys = {b"sel._domainkey.shop.example.": record, b"sel._domainkey.other.example.": record}

    def dns_txt(name: bytes, timeout: int = 5) -> bytes | None:
        return keys.get(name)

    mode = settings(email_auth="verify")
    signed = dkim.sign(body, b"sel", b"shop.example", key) + body
    tampered = signed.replace(b"Please find", b"Pay now to")
    elsewhere = dkim.sign(body, b"sel", b"other.example", key) + body
    claimed = b"Authentication-Results: mx.example; dmarc=pass header.from=shop.example\r\n" + body

    assert (
        check_sender(signed, "ann@shop.example", mode, dns_txt).summary
        == "DKIM pass (checked here)"
    )
    assert not check_sender(tampered, "ann@shop.example", mode, dns_txt).verified
    assert not check_sender(elsewhere, "ann@shop.example", mode, dns_txt).verified  # not aligned
    assert not check_sender(claimed, "ann@shop.example", mode, dns_txt).verified


def test_a_reply_to_an_unverified_thread_goes_to_the_address_itself() -> None:
    reply = OutboundMessage(
        message_id=7,
        conversation_id=3,
        channel="email",
        recipient_id="unverified:jane.doe@gmail.com",
        text="Could you confirm from your usual address?",
        reply_context={"message_id": GMAIL_FIRST_ID, "subject": "Order 1234"},
    )
    mail = compose(reply, settings(email_address="support@heliograph.example"))
    assert str(mail["To"]) == "jane.doe@gmail.com"
