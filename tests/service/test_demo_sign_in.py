"""What a newcomer gets from `make run`: the demo team's printed accounts sign in, and the
demo holds what the README's screenshots show (a translated voice note with its transcript,
a customer with journey moves, scores and an open intervention, an inbox on several channels
and languages). A database without the demo team, or whose members chose their own
passwords, prints no account."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from heliograph import ratelimit
from heliograph.db import Database
from heliograph.settings import reset_settings
from routing import credentials
from service import demo
from tests.utils.factories import make_member
from tests.utils.jobs import run_jobs

HTML = {"Accept": "text/html"}
URL = "http://127.0.0.1:8000"


@pytest.fixture(autouse=True)
def _demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ratelimit.reset()
    # The voice note's file goes where fetched media go: here, the test's own folder.
    monkeypatch.setenv("HELIOGRAPH_MEDIA_DIR", str(tmp_path / "media"))
    reset_settings()


async def _seed(database: Database) -> None:
    async with database.session() as session:
        await demo.seed_demo(session, customers=12)
        await session.commit()


async def _printed(database: Database) -> list[tuple[str, str, str]]:
    """(email, role, password) of each row ``heliograph demo`` prints."""
    async with database.session() as session:
        table = demo.sign_in_table(URL, await demo.demo_accounts(session))
        await session.commit()
    if not table:
        return []
    first, header, *rows = table.splitlines()
    assert first.startswith(f"Sign in at {URL}/sign-in")
    assert header.split() == ["email", "role", "password"]
    return [tuple(r.split()) for r in rows]  # type: ignore[misc]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    form = await client.get("/sign-in", headers=HTML)
    return await client.post(
        "/sign-in",
        data={"email": email, "password": password, "next": "/", "csrf_token": _csrf(form.text)},
        headers=HTML,
    )


async def test_the_printed_demo_accounts_sign_in(
    client: httpx.AsyncClient, database: Database
) -> None:
    await _seed(database)
    printed = await _printed(database)
    roles = {email: role for email, role, _ in printed}
    assert roles["oliver@heliograph.example"] == "lead"
    assert roles["helena@heliograph.example"] == "admin"
    assert len(printed) == 7  # the whole demo team (service/demo_data/team.yaml)
    email, _, password = next(p for p in printed if p[0] == "oliver@heliograph.example")

    wrong = await _sign_in(client, email, password + "x")
    assert wrong.status_code == 401
    done = await _sign_in(client, email, password)
    assert done.status_code == 303 and done.headers["location"] == "/"
    inbox = await client.get("/", headers=HTML)
    assert inbox.status_code == 200 and "Oliver Bennett" in inbox.text


async def test_a_database_without_the_demo_team_prints_no_account(database: Database) -> None:
    async with database.session() as session:
        member = await make_member(session, "Ana Real", "admin", email="ana@company.example")
        await credentials.set_password(session, member, "her own long password")
        await session.commit()
    assert await _printed(database) == []


async def test_a_password_a_member_chose_is_kept_and_not_printed(
    client: httpx.AsyncClient, database: Database
) -> None:
    await _seed(database)
    async with database.session() as session:
        oliver = await credentials.member_by_email(session, "oliver@heliograph.example")
        assert oliver is not None
        await credentials.set_password(session, oliver, "oliver chose this one")
        await session.commit()
    await _seed(database)  # seeding again sets no password over his
    printed = [email for email, _, _ in await _printed(database)]
    assert "oliver@heliograph.example" not in printed and len(printed) == 6
    refused = await _sign_in(client, "oliver@heliograph.example", "oliver-demo-pass")
    assert refused.status_code == 401
    assert (
        await _sign_in(client, "oliver@heliograph.example", "oliver chose this one")
    ).status_code == 303


async def test_the_demo_shows_a_translated_voice_note_a_journey_and_many_channels(
    client: httpx.AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make run` translates with the sandbox's LibreTranslate; the demo's translations are in
    # the cache, so nothing is asked of the (here unreachable) provider.
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_ENABLED", "true")
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_PROVIDER", demo.DEMO_TRANSLATION_PROVIDER)
    monkeypatch.setenv("HELIOGRAPH_TRANSLATION_URL", "http://127.0.0.1:9/libretranslate")
    reset_settings()
    await _seed(database)
    await run_jobs(database)
    assert (
        await _sign_in(client, "oliver@heliograph.example", "oliver-demo-pass")
    ).status_code == 303

    inbox = await client.get("/?view=mine", headers=HTML)
    assert inbox.status_code == 200
    for words in ("Beatriz Souza", "Daria Ivanova", "Kenji Sato", "Mateo López", "Emma Clarke"):
        assert words in inbox.text
    assert "Hello! I can&#39;t log in to the app since the update." in inbox.text
    for channel in ("whatsapp", "telegram", "email", "sms"):
        assert channel in inbox.text.lower()

    voice = next(s for s in demo.SHOWCASE if s.voice)
    link = re.search(r'href="(/conversations/\d+)">Beatriz Souza<', inbox.text)
    assert link, "Beatriz's conversation is not linked from the inbox"
    page = await client.get(link.group(1), headers=HTML)
    assert page.status_code == 200
    shown = page.text.replace("&#39;", "'")
    assert "🎤 " + voice.english in shown  # the translation, read by Oliver
    assert voice.text in shown  # the original, and the transcript beside the audio
    assert 'class="transcript"' in shown and "<audio" in shown
    audio = re.search(r'<audio[^>]*src="([^"]+)"', page.text)
    assert audio
    played = await client.get(audio.group(1))
    assert played.status_code == 200 and played.content[:4] == b"RIFF"

    customer = re.search(r'href="(/customers/\d+)"', page.text)
    assert customer, "the conversation does not link its customer"
    profile = await client.get(customer.group(1), headers=HTML)
    assert profile.status_code == 200
    assert 'aria-current="step"' in profile.text  # the journey map's current stage
    assert "Mark done" in profile.text  # an open intervention to act on
    moves = re.search(r'<ul class="cu-moves">(.*?)</ul>', profile.text, re.S)
    assert moves and moves.group(1).count("<li>") >= 2  # the moves along the journey
