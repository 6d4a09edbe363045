"""Sign requests the way outside callers of the API channel do."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SECRET = "test-inbound-secret-0123456789"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def inbound_body(
    message_id: str, sender_id: str = "cust-1", text: str = "hello", **sender: Any
) -> bytes:
    return json.dumps(
        {"message_id": message_id, "sender": {"id": sender_id, **sender}, "text": text}
    ).encode()


def signed_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Heliograph-Signature": sign(body, secret)}
