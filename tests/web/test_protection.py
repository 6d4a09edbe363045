"""Abuse limits and security headers (web/protection.py, heliograph/ratelimit.py): 429 with
Retry-After past each limit (a webhook's channel, an API token, an IP's failed logins, a
Telegram chat's /link attempts), limits that are configurable and can be turned off, and
the headers on every answer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from heliograph import ratelimit
from heliograph.db import Database
from heliograph.models import AuditEvent
from heliograph.settings import reset_settings
from inbox.models import Message
from routing.models import TeamMember
from surfaces.telegram_links import issue_link_code
from tests.utils.factories import member_with_token
from tests.utils.signing import inbound_body, signed_headers
from tests.utils.telegram_team import TeamBot

ME = "/api/v1/team-members/me"

AppFactory = Callable[..., AsyncIterator[httpx.AsyncClient]]


@asynccontextmanager
async def app_with(**settings: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with these settings (``rate_limit_api="3/minute"``, ...)."""
    for name, value in settings.items():
        os.environ[f"HELIOGRAPH_{name.upper()}"] = value
    reset_settings()
    from service.app import create_app

    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def assert_too_many(response: httpx.Response, what: str) -> int:
    """A 429 that says what and when; its Retry-After in seconds."""
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= 60
    error = response.json()["error"]
    assert what in error and error.endswith(f"try again in {retry_after} s"), error
    return retry_after


# --- limits ------------------------------------------------------------------------------------


async def test_the_api_is_limited_per_token(database: Database) -> None:
    _, ada = await member_with_token(database, "agent", "Ada Agent")
    _, bob = await member_with_token(database, "agent", "Bob Agent")
    async with app_with(rate_limit_api="3/minute") as app:
        for _ in range(3):
            assert (await app.get(ME, headers=ada)).status_code == 200
        assert_too_many(await app.get(ME, headers=ada), "too many requests with this API token")
        # Another token is counted apart.
        assert (await app.get(ME, headers=bob)).json()["name"] == "Bob Agent"


async def test_a_webhook_is_limited_per_channel(database: Database) -> None:
    async with app_with(rate_limit_webhook="2/minute") as app:
        for n in range(2):
            body = inbound_body(f"m{n}", text=f"hello {n}")
            answer = await app.post("/api/v1/inbound", content=body, headers=signed_headers(body))
            assert answer.status_code == 200, answer.text
        body = inbound_body("m2", text="one too many")
        refused = await app.post("/api/v1/inbound", content=body, headers=signed_headers(body))
        assert_too_many(refused, "too many requests on the api webhook")
        # Another channel's webhook still gets through to its own checks (403: unsigned).
        slack = await app.post("/webhooks/slack/events", content=b"{}")
        assert slack.status_code == 403, slack.text
        for _ in range(2):
            await app.post("/webhooks/slack/events", content=b"{}")
        assert_too_many(
            await app.post("/webhooks/slack/events", content=b"{}"),
            "too many requests on the slack webhook",
        )
    async with database.read_session() as session:
        from sqlalchemy import func, select

        stored = (await session.execute(select(func.count()).select_from(Message))).scalar_one()
    assert stored == 2  # the refused message was not stored


async def test_an_ip_past_its_failed_logins_is_refused_before_any_check(
    database: Database,
) -> None:
    _, good = await member_with_token(database)
    async with app_with(rate_limit_failed_auth="3/minute") as app:
        wrong = {"Authorization": "Bearer hg_guessed-token"}
        for _ in range(3):
            assert (await app.get(ME, headers=wrong)).status_code == 401
        # Now even a valid token from that address waits: nothing is looked at.
        assert_too_many(await app.get(ME, headers=good), "too many failed authentications")
        assert_too_many(await app.get("/healthz"), "too many failed authentications")


async def test_limits_are_configurable_and_can_be_turned_off(database: Database) -> None:
    _, auth = await member_with_token(database)
    async with app_with(rate_limit_api="2/minute", rate_limit_enabled="false") as app:
        statuses = {(await app.get(ME, headers=auth)).status_code for _ in range(5)}
    assert statuses == {200}
    async with app_with(rate_limit_enabled="true", rate_limit_api="") as app:  # this one off
        statuses = {(await app.get(ME, headers=auth)).status_code for _ in range(5)}
    assert statuses == {200}
    async with app_with(rate_limit_api="2/minute") as app:
        statuses = {(await app.get(ME, headers=auth)).status_code for _ in range(3)}
    assert statuses == {200, 429}


async def test_a_redis_store_is_shared_by_every_process(database: Database) -> None:
    """Two processes on one Redis share their counts (a process's limiter starts empty)."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    _, auth = await member_with_token(database)  # a fresh random token: its own key
    shared = {"rate_limit_storage": "redis://127.0.0.1:6379/0", "rate_limit_api": "2/minute"}
    async with app_with(**shared) as first:
        assert (await first.get(ME, headers=auth)).status_code == 200
    ratelimit.reset()  # what a second process starts with
    async with app_with(**shared) as second:
        assert (await second.get(ME, headers=auth)).status_code == 200
        assert_too_many(await second.get(ME, headers=auth), "with this API token")


async def test_telegram_link_attempts_are_locked_out_per_chat(team_bot: TeamBot) -> None:
    ana, _ = await team_bot.member("Ana Silva")
    async with team_bot.db.session() as session:  # as POST .../me/telegram-link issues it
        code, _expires = await issue_link_code(session, ana)
        await session.commit()
    for n in range(5):  # the default: five tries per chat in 15 minutes
        await team_bot.say("900091", f"/link WRONG{n:03}")
    await team_bot.say("900091", f"/link {code}")  # right, but too late
    await team_bot.settle()

    answers = await team_bot.texts("900091")
    assert len(answers) == 6
    assert all(t.startswith("That code is not valid") for t in answers[:5])
    assert answers[5] == "Too many attempts; try again in 15 minutes."
    (member,) = await team_bot.rows(TeamMember, TeamMember.id == ana.id)
    assert member.telegram_chat_id is None
    locked = await team_bot.rows(AuditEvent, AuditEvent.action == "telegram.link_refused")
    assert len(locked) == 6
    # Another chat is not locked out: the same code still works there.
    await team_bot.say("900092", f"/link {code}")
    await team_bot.settle()
    assert (await team_bot.texts("900092"))[0].startswith("✅ Linked")


# --- headers -----------------------------------------------------------------------------------


async def test_every_answer_has_the_security_headers(database: Database) -> None:
    async with app_with() as app:
        answers = [
            await app.get("/healthz"),
            await app.get(ME),  # 401
            await app.get("/no-such-page"),  # 404
        ]
        docs = await app.get("/docs")
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        assert "strict-transport-security" not in answer.headers  # plain http public URL
    # The Swagger UI's page may load what it needs from its CDN, and nothing else.
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.text
    assert (
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net"
        in (docs.headers["content-security-policy"])
    )


async def test_https_deployments_get_strict_transport_security(database: Database) -> None:
    async with app_with(public_url="https://support.example.com") as app:
        answer = await app.get("/healthz")
    assert answer.headers["strict-transport-security"].startswith("max-age=31536000")
