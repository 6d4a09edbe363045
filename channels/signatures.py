"""The one comparison every webhook verifier makes: a given secret or signature against
the expected one, in constant time.

Headers reach us decoded as Latin-1 (ASGI), so a client can send any character in them.
``hmac.compare_digest`` raises TypeError for a ``str`` that is not ASCII, which surfaced
as a 500; comparing the UTF-8 bytes instead makes such a header what it is: a signature
that does not match (403 in the caller).
"""

from __future__ import annotations

import hmac


def _bytes(value: str | bytes) -> bytes:
    # surrogatepass: even a lone surrogate (never a real signature) encodes, and mismatches.
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def matches(given: str | bytes | None, expected: str | bytes | None) -> bool:
    """True only when both are present and equal (constant time for equal lengths)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(_bytes(given), _bytes(expected))
