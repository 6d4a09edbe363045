"""How erasure finds a customer named in free text that no key ties to them."""

from __future__ import annotations

from crm_core.gdpr_mentions import MARK, Terms, scrubbed


def test_names_contacts_and_ids_are_replaced_as_whole_words() -> None:
    terms = Terms(loose=["Will Banana", "will@example.org", "7391046285"], exact=["Will"])
    pattern = terms.pattern()
    assert pattern is not None
    payload = {
        "text": "💬 WILL BANANA wrote: Will says he will call from will@example.org",
        "kind": "will",  # a lower-case word is not the name part "Will"
        "chat": "chat 7391046285, not 17391046285",
        "items": ["Bananas for Will", 7391046285],
    }
    assert scrubbed(payload, pattern) == {
        "text": f"💬 {MARK} wrote: {MARK} says he will call from {MARK}",
        "kind": "will",
        "chat": f"chat {MARK}, not 17391046285",
        "items": [f"Bananas for {MARK}", 7391046285],
    }


def test_a_customer_without_a_name_or_contact_has_nothing_to_find() -> None:
    assert Terms().pattern() is None
