"""Canonical forms for contact points: E.164 phones, lower-case emails."""

from __future__ import annotations

import re

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InvalidContact(ValueError):
    """A phone number or email address that cannot be understood."""


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """``+44 20 7946 0958`` -> ``+442079460958``. Numbers without ``+`` need a region."""
    text = raw.strip()
    if text.lower().startswith(("whatsapp:", "tel:", "sms:")):
        text = text.split(":", 1)[1]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidContact(f"not a phone number: {raw!r} ({exc})") from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidContact(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    text = raw.strip().lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:") :]
    if not _EMAIL.match(text):
        raise InvalidContact(f"not an email address: {raw!r}")
    return text


def search_key(name: str) -> str:
    return " ".join(name.lower().split())[:200]
