# ruff: noqa: RUF001 (the Russian pages are asserted in Cyrillic)
"""The web app in English, Spanish, Mandarin Chinese and Russian (issue #16): every string the
pages show is translated in each catalogue (extracted from the sources as `make translations`
does, so a new string without its translations fails here), a Russian-speaking member gets
the inbox, a conversation and a customer in Russian with dates in Russian and in their own
zone, and choosing Russian on /me turns the page Russian in Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from sqlalchemy import update

from crm_core.models import ENROLLMENT_STATUSES
from heliograph.db import Database
from inbox.models import STATUSES, Message
from tests.utils.factories import make_member, receive
from tests.utils.web import signed_in
from web.ui import inbox as inbox_page
from web.ui.render import translations

UI = Path(__file__).resolve().parents[3] / "web" / "ui"
LANGUAGES = ("es", "zh", "ru")
PLURAL_FORMS = {"es": 3, "zh": 1, "ru": 3}  # CLDR: es one/many/other, zh other, ru one/few/many
HTML = {"Accept": "text/html"}
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")  # %(name)s, and {name} for the scripts
STRAY_PERCENT = re.compile(r"%(?!\(\w+\)s|%)")


def _extracted() -> dict[str | tuple[str, str], str]:
    """Every msgid of web/ui as `make translations` extracts it (web/ui/babel.cfg, and
    render.py's N_ marker), with where it was found."""
    with (UI / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found: dict[str | tuple[str, str], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(UI), method_map, options_map, keywords=keywords
    ):
        key = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault(key, f"{filename}:{lineno}")
    return found


def _catalog(language: str) -> Any:
    with (UI / "locale" / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=language)


def test_every_string_is_translated_in_every_language() -> None:
    extracted = _extracted()
    assert len(extracted) > 150 and "Sign in" in extracted  # the extraction found the pages
    problems = []
    for language in LANGUAGES:
        catalog = _catalog(language)
        assert catalog.num_plurals == PLURAL_FORMS[language], language
        for msgid, where in extracted.items():
            entry = catalog.get(msgid)
            if entry is None or entry.fuzzy:
                problems.append(f"{language}: no translation of {msgid!r} ({where})")
                continue
            singular = msgid if isinstance(msgid, str) else msgid[0]
            wanted = set(PLACEHOLDER.findall(singular))
            forms = (entry.string,) if isinstance(msgid, str) else entry.string
            if isinstance(msgid, tuple) and len(forms) != PLURAL_FORMS[language]:
                problems.append(f"{language}: {msgid!r} has {len(forms)} plural forms")
            for form in forms:
                if not form or not form.strip():
                    problems.append(f"{language}: empty translation of {msgid!r} ({where})")
                elif set(PLACEHOLDER.findall(form)) != wanted:
                    problems.append(f"{language}: {form!r} changes the placeholders of {msgid!r}")
                elif STRAY_PERCENT.search(form):  # pages always %-format: "%%" for a "%"
                    problems.append(f"{language}: {form!r} has a % that is no placeholder")
    assert not problems, "run `make translations` and translate:\n" + "\n".join(problems)


def test_the_stored_values_pages_translate_are_marked() -> None:
    """Pages translate a conversation's status, a priority and an enrollment's status as
    they show them (``_(c.status)``): each value must be in the catalogues."""
    extracted = _extracted()
    values = {*STATUSES, *inbox_page.PRIORITIES, *ENROLLMENT_STATUSES}
    assert not sorted(v for v in values if v not in extracted)
    assert translations("ru").gettext("resolved") == "решён"


def test_russian_plurals_follow_the_number() -> None:
    singular = "Too many failed sign-ins. Try again in %(num)s minute."
    plural = "Too many failed sign-ins. Try again in %(num)s minutes."
    ru = translations("ru")
    shown = {n: ru.ngettext(singular, plural, n) % {"num": n} for n in (1, 3, 5, 21, 12)}
    assert shown[1].endswith("через 1 минуту.") and shown[21].endswith("через 21 минуту.")
    assert shown[3].endswith("через 3 минуты.")
    assert shown[5].endswith("через 5 минут.") and shown[12].endswith("через 12 минут.")
    zh = translations("zh")
    assert zh.ngettext(singular, plural, 1) == zh.ngettext(singular, plural, 7)  # one form


async def _russian_member(database: Database, **kw: Any) -> int:
    async with database.session() as session:
        member = await make_member(
            session, "Olga Ivanova", "agent", timezone="Europe/Moscow", ui_language="ru", **kw
        )
        await session.commit()
        return int(member.id)  # type: ignore[arg-type]


async def test_a_russian_member_gets_the_pages_in_russian(
    client: httpx.AsyncClient, database: Database
) -> None:
    member_id = await _russian_member(database)
    got = await receive(
        database, "ru-1", "cust-ru", text="Where is my order?", name="Ana Silva",
        timezone="America/Sao_Paulo",
    )  # fmt: skip
    moment = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)  # 12:30 in Moscow, 06:30 in São Paulo
    async with database.session() as session:
        await session.execute(
            update(Message).where(Message.id == got.message_id).values(created_at=moment)  # type: ignore[arg-type]
        )
        await session.commit()
    # Signed out, the browser's language chooses: Mandarin for a Chinese browser.
    zh = await client.get("/sign-in", headers={**HTML, "Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh"' in zh.text and "登录 Heliograph" in zh.text
    signed_in(client, member_id)

    inbox = await client.get("/?view=all", headers=HTML)
    assert inbox.status_code == 200 and '<html lang="ru"' in inbox.text
    for seen in ("Входящие", "Клиенты", "Шаблоны ответов", "Фильтровать", "Выйти", "Время клиента"):
        assert seen in inbox.text, seen
    assert "Ana Silva" in inbox.text and ">Inbox<" not in inbox.text

    conversation = await client.get(f"/conversations/{got.conversation_id}", headers=HTML)
    assert conversation.status_code == 200
    for seen in ("Отправить ответ", "Решить", "Канал", "Приоритет", "обычный"):
        assert seen in conversation.text, seen
    assert "Send reply" not in conversation.text
    # A Russian date in the member's zone (Moscow), the customer's time beside it (São Paulo).
    assert '08.03.2026, 12:30</time> <span class="muted their-time">(у клиента 06:30)' in (
        conversation.text
    )

    customer = await client.get(f"/customers/{got.customer_id}", headers=HTML)
    assert customer.status_code == 200
    for seen in ("Путь клиента", "Хронология", "Диалоги", "Контакты", "открыт"):
        assert seen in customer.text, seen
    assert re.search(r"\d\d\.\d\d\.\d{4}, \d\d:\d\d", customer.text)  # dates the Russian way
    assert "Conversations" not in customer.text

    missing = await client.get("/conversations/987654", headers=HTML)
    assert missing.status_code == 404
    assert "Не найдено" in missing.text and "Такого диалога нет." in missing.text


@pytest.mark.slow
async def test_choosing_russian_on_the_settings_page(database: Database, browser_page) -> None:  # type: ignore[no-untyped-def]
    async with database.session() as session:
        member = await make_member(session, "Maya Tan", "agent", timezone="Asia/Kuala_Lumpur")
        await session.commit()
        member_id = int(member.id)  # type: ignore[arg-type]
    page = await browser_page(member_id)
    await page.goto("/me")
    assert await page.locator("h1").inner_text() == "Your settings"
    await page.select_option("#language", "ru")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_role("heading", name="Ваши настройки").wait_for()
    assert await page.locator("html").get_attribute("lang") == "ru"
    assert await page.locator("p.ok").inner_text() == "Сохранено."
    nav = page.get_by_role("navigation", name="Основное меню")
    assert await nav.get_by_role("link", name="Входящие").is_visible()
    await nav.get_by_role("link", name="Входящие").click()
    await page.get_by_role("heading", name="Входящие").wait_for()
