"""Signing in to the web app: passwords, the limit on failures, sign-out, CSRF, roles,
invites, sessions ended by a password change, the interface language, and a phone."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import timedelta

import httpx
import pytest

from heliograph import ratelimit
from heliograph.db import Database, get_db, utcnow
from routing import credentials
from routing.models import MemberInvite, TeamMember
from service.cli import main
from tests.utils.factories import make_member
from tests.utils.web import signed_in

PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    ratelimit.reset()


async def _member(database: Database, role: str = "agent", password: str | None = PASSWORD) -> int:
    async with database.session() as session:
        member = await make_member(session, "Maya Tan", role, timezone="Asia/Kuala_Lumpur")
        if password:
            await credentials.set_password(session, member, password)
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, email: str, password: str, next: str = "/"):  # type: ignore[no-untyped-def]
    form = await client.get(f"/sign-in?next={next}", headers=HTML)
    assert form.status_code == 200
    return await client.post(
        "/sign-in",
        data={"email": email, "password": password, "next": next, "csrf_token": _csrf(form.text)},
        headers=HTML,
    )


async def test_sign_in_out_wrong_password_and_csrf(
    client: httpx.AsyncClient, database: Database
) -> None:
    await _member(database)
    email = "maya.agent@team.example"
    wrong = await _sign_in(client, email, "not the password")
    unknown = await _sign_in(client, "nobody@team.example", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "The email or password is wrong." in wrong.text
    assert "The email or password is wrong." in unknown.text  # no account enumeration
    assert (await client.get("/", headers=HTML)).status_code == 303

    # no CSRF token: refused, even on the sign-in form
    bare = await client.post("/sign-in", data={"email": email, "password": PASSWORD}, headers=HTML)
    assert bare.status_code == 403

    # next= leads only to a path of this site
    evil = await _sign_in(client, email, PASSWORD, next="//evil.example/x")
    assert evil.status_code == 303 and evil.headers["location"] == "/"
    ok = await _sign_in(client, email.upper(), PASSWORD, next="/customers")
    assert ok.status_code == 303 and ok.headers["location"] == "/customers"
    home = await client.get("/", headers=HTML)
    assert home.status_code == 200 and "Maya Tan" in home.text

    assert (await client.post("/sign-out", headers=HTML)).status_code == 403  # no CSRF
    out = await client.post("/sign-out", data={"csrf_token": _csrf(home.text)}, headers=HTML)
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    assert (await client.get("/", headers=HTML)).status_code == 303


async def test_failed_sign_ins_are_limited(client: httpx.AsyncClient, database: Database) -> None:
    await _member(database)
    for _ in range(5):
        assert (await _sign_in(client, "maya.agent@team.example", "nope")).status_code == 401
    limited = await _sign_in(client, "maya.agent@team.example", PASSWORD)
    assert limited.status_code == 429
    assert "Too many failed sign-ins" in limited.text
    # the same address is limited for another email too
    other = await _sign_in(client, "someone@team.example", "nope")
    assert other.status_code == 429


async def test_agent_cannot_open_admin_page_and_admin_invites(
    client: httpx.AsyncClient, database: Database
) -> None:
    signed_in(client, await _member(database, "agent"))
    assert (await client.get("/team/invites", headers=HTML)).status_code == 403

    async with database.session() as session:
        admin = await make_member(session, "Ana Admin", "admin")
        newbie = await make_member(session, "Neo New", "agent")
        await session.commit()
        admin_id, newbie_email = int(admin.id), newbie.email  # type: ignore[arg-type]
    client.cookies.clear()
    csrf = signed_in(client, admin_id)
    assert (await client.get("/team/invites", headers=HTML)).status_code == 200
    made = await client.post(
        "/team/invites", data={"email": newbie_email, "csrf_token": csrf}, headers=HTML
    )
    assert made.status_code == 200
    url = re.search(r'<code class="invite-url">([^<]+)</code>', made.text)
    assert url and "/invite/" in url.group(1)
    path = "/invite/" + url.group(1).rsplit("/invite/", 1)[1]

    client.cookies.clear()
    form = await client.get(path, headers=HTML)
    assert form.status_code == 200 and "Neo New" in form.text
    fields = {
        "password": PASSWORD,
        "password_again": "different one!",
        "csrf_token": _csrf(form.text),
    }
    assert (await client.post(path, data=fields, headers=HTML)).status_code == 422
    fields["password_again"] = PASSWORD
    done = await client.post(path, data=fields, headers=HTML)
    assert done.status_code == 303
    assert "Neo New" in (await client.get("/", headers=HTML)).text  # signed in
    client.cookies.clear()
    assert (await client.get(path, headers=HTML)).status_code == 404  # used once
    assert (await _sign_in(client, newbie_email, PASSWORD)).status_code == 303

    # an invite older than 7 days no longer works
    async with database.session() as session:
        member = await credentials.member_by_email(session, newbie_email)
        assert member is not None
        token = await credentials.create_invite(session, member)
        await session.commit()
    async with database.session() as session:
        from sqlalchemy import update

        await session.execute(
            update(MemberInvite).values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
    assert (await client.get(f"/invite/{token}", headers=HTML)).status_code == 404


async def test_password_change_ends_other_sessions(
    client: httpx.AsyncClient, database: Database
) -> None:
    member_id = await _member(database)
    assert (await _sign_in(client, "maya.agent@team.example", PASSWORD)).status_code == 303
    assert (await client.get("/", headers=HTML)).status_code == 200
    async with database.session() as session:
        member = await session.get(TeamMember, member_id)
        assert member is not None
        await credentials.set_password(session, member, "a brand new password")
        await session.commit()
    assert (await client.get("/", headers=HTML)).status_code == 303


async def test_language_choice_changes_the_page(
    client: httpx.AsyncClient, database: Database
) -> None:
    csrf = signed_in(client, await _member(database, password=None))
    me = await client.get("/me", headers=HTML)
    assert me.status_code == 200 and "Asia/Kuala_Lumpur" in me.text and "Your settings" in me.text
    saved = await client.post(
        "/me", data={"language": "es", "theme": "dark", "csrf_token": csrf}, headers=HTML
    )
    assert saved.status_code == 200
    again = await client.get("/me", headers=HTML)
    assert 'lang="es"' in again.text and 'data-theme="dark"' in again.text
    assert "Tus ajustes" in again.text and "Cerrar sesión" in again.text
    # A path no page has: the error page keeps the member's language and theme.
    missing = await client.get("/no-such-page", headers=HTML)
    assert missing.status_code == 404
    assert 'lang="es"' in missing.text and 'data-theme="dark"' in missing.text
    bad = await client.post(
        "/me", data={"language": "xx", "theme": "dark", "csrf_token": csrf}, headers=HTML
    )
    assert bad.status_code == 422


def test_set_password_and_invite_on_the_command_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def add() -> None:
        async with get_db().session() as session:
            await make_member(session, "Tom Lead", "lead")
            await session.commit()

    asyncio.run(add())
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["set-password", "tom.lead@team.example", "--stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["set-password", "tom.lead@team.example", "--stdin"]) == 0
    assert main(["set-password", "nobody@team.example", "--stdin"]) == 2
    assert main(["invite", "tom.lead@team.example", "--base-url", "https://hg.example"]) == 0
    out = capsys.readouterr().out
    assert "password set for tom.lead@team.example" in out
    assert re.search(r"^https://hg\.example/invite/\S+$", out, re.M)

    async def check() -> TeamMember | None:
        from heliograph.db import close_db

        try:
            async with get_db().session() as session:
                return await credentials.authenticate(session, "tom.lead@team.example", PASSWORD)
        finally:
            await close_db()

    assert asyncio.run(check()) is not None


async def test_sign_in_on_a_phone(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    await _member(database)
    page = await browser_page(None, width=375)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto("/customers")
    assert "/sign-in" in page.url
    await page.fill("#email", "maya.agent@team.example")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/customers")
    assert "Maya Tan" in await page.content()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    assert errors == []
