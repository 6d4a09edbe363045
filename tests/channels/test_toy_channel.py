"""A channel added by following docs/adding-a-channel.md, and nothing else: the toy
channel in tests/fixtures/toy_channel/ (what would be ``channels/toy/``), registered the
way its one registry line would register it. Its webhook is mounted, a signed POST is
stored through the intake, a bad signature is 403, its fake is in the sandbox, its demo
values are in ``heliograph demo``'s, and its settings are in the configuration's sections.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from channels import registry
from channels.base import ChannelPackage
from heliograph.db import Database
from heliograph.settings import reset_settings, sections, sections_declared_meanwhile
from inbox.models import Message

SECRET = "toy-secret-for-tests-0123456789"
MESSAGE = Path(__file__).parents[1] / "fixtures" / "toy" / "message.json"


@pytest.fixture(scope="module")
def toy() -> Iterator[ChannelPackage]:
    """The toy package, imported here only; the settings section it declares is taken out
    of ``sections()`` again afterwards, so no other test sees a channel the service lacks."""
    with sections_declared_meanwhile():
        from tests.fixtures.toy_channel.package import PACKAGE

        yield PACKAGE


@pytest.fixture
async def toy_client(
    toy: ChannelPackage, database: Database, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The service's app with the toy's registry line added, as the registry would hold it."""
    monkeypatch.setenv("HELIOGRAPH_TOY_SECRET", SECRET)
    monkeypatch.setattr(registry, "PACKAGES", (*registry.PACKAGES, toy))
    reset_settings()
    from service.app import create_app

    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    reset_settings()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Toy-Signature": f"sha256={digest}"}


async def test_the_toy_webhook_is_mounted_and_stores_a_signed_message_through_the_intake(
    toy_client: httpx.AsyncClient, database: Database
) -> None:
    body = MESSAGE.read_bytes()
    first = await toy_client.post("/webhooks/toy", content=body, headers=signed(body))
    again = await toy_client.post("/webhooks/toy", content=body, headers=signed(body))

    assert (first.status_code, first.json()) == (200, {"stored": 1, "duplicates": 0})
    assert (again.status_code, again.json()) == (200, {"stored": 0, "duplicates": 1})
    async with database.read_session() as session:
        rows = (await session.execute(select(col(Message.channel), col(Message.text)))).all()
    assert [tuple(row) for row in rows] == [("toy", json.loads(body)["text"])]


async def test_a_bad_toy_signature_is_403_and_stores_nothing(
    toy_client: httpx.AsyncClient, database: Database
) -> None:
    body = MESSAGE.read_bytes()
    forged = await toy_client.post("/webhooks/toy", content=body, headers=signed(body, "guess"))
    unsigned = await toy_client.post(
        "/webhooks/toy", content=body, headers={"Content-Type": "application/json"}
    )

    assert forged.status_code == 403
    assert forged.json() == {"error": "the signature does not match the body"}
    assert (unsigned.status_code, unsigned.json()) == (
        403,
        {"error": "the signature header is missing"},
    )
    async with database.read_session() as session:
        assert (await session.execute(select(col(Message.id)))).all() == []


async def test_the_toy_fake_demo_values_and_settings_come_with_its_package(
    toy: ChannelPackage,
) -> None:
    from service.app import create_app

    packages = (*registry.PACKAGES, toy)
    assert "/webhooks/toy" in create_app(packages).openapi()["paths"]
    assert "/webhooks/toy" not in create_app().openapi()["paths"]  # no registry line, no route

    sandbox = registry.sandbox_app(packages)
    transport = httpx.ASGITransport(app=sandbox)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as fake:
        sent = await fake.post("/toy/send", json={"to": "toy-customer-7", "text": "hi"})
        calls = await fake.get("/_sandbox/calls", params={"provider": "toy"})
    assert sent.status_code == 200 and sent.json()["id"].startswith("toy-")
    assert [c["params"] for c in calls.json()] == [{"to": "toy-customer-7", "text": "hi"}]

    demo = registry.demo_env("http://127.0.0.1:8900", packages)
    assert demo["HELIOGRAPH_TOY_API_BASE"] == "http://127.0.0.1:8900/toy"
    assert demo["HELIOGRAPH_TELEGRAM_API_BASE"] == "http://127.0.0.1:8900/telegram"

    assert toy.settings in sections()
    assert {"toy_secret", "toy_api_base"} <= set(toy.settings.model_fields)
