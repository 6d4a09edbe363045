"""``/hg`` from Slack: every subcommand as a lead and as a plain agent, refusals, and the
3-second rule.

Heliograph runs in-process; the fake Slack (``sandbox``: Web API and the
``response_url`` receiver) is its own process, so a delayed answer crosses real HTTP.
Commands are Slack's documented slash-command form, signed with the signing secret.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from sqlalchemy import func, select, update

from handoff.models import Handoff
from heliograph.db import Database, utcnow
from heliograph.settings import get_settings, reset_settings
from inbox.models import Conversation
from routing.models import Assignment, TeamMember
from surfaces import slack_commands
from tests.utils.processes import free_port, start_heliograph
from tests.utils.routing_world import ALWAYS, customer_writes, give, team
from tests.utils.slack import BOT_TOKEN, SIGNING_SECRET, slack_env
from tests.utils.slack_commands import block_text, post_command, response_url, wait_for_response

LEAD, AGENT, OTHER, STRANGER = "U0LENALEAD", "U0OLIVERAG", "U0AIKOAGNT", "U0STRANGER"
LENA = {"name": "Lena Petrova", "timezone": "Europe/Moscow", "region": "EMEA", "role": "lead"}
OLIVER = {"name": "Oliver Bennett", "timezone": "Europe/London", "region": "EMEA"}
AIKO = {"name": "Aiko Tanaka", "timezone": "Asia/Tokyo", "region": "APAC"}
LOCK_S = 5.0  # how long the slow-database test holds its lock


SERVICE_PORT = free_port()  # where the cross-process test's ``heliograph serve`` listens


SANDBOX_ENV = {
    "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
    "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "HELIOGRAPH_PUBLIC_URL": f"http://127.0.0.1:{SERVICE_PORT}",
}


@pytest.fixture
async def slack(
    sandbox_url: str, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    slack_env(monkeypatch, f"{sandbox_url}/slack/api/")
    yield client
    await slack_commands.settle()  # no answer left in flight when the database goes
    reset_settings()


@pytest.fixture
async def people(database: Database) -> dict[str, int]:
    return await team(
        database,
        {**LENA, "hours": ALWAYS, "slack_user_id": LEAD},
        {**OLIVER, "hours": ALWAYS, "slack_user_id": AGENT},
        {**AIKO, "hours": ALWAYS, "slack_user_id": OTHER, "capacity": 3},
    )


async def hg(
    client: httpx.AsyncClient, sandbox_url: str, text: str, user: str = LEAD
) -> dict[str, Any]:
    """What the asker finally sees: the acknowledgement itself, or (when it only said
    "working on it") the answer posted to the response URL."""
    url, key = response_url(sandbox_url)
    ack = await post_command(client, text, user, url)
    assert ack.status_code == 200, ack.text
    body: dict[str, Any] = ack.json()
    assert body["response_type"] == "ephemeral"
    if body["blocks"][0]["text"]["text"].startswith("Working on"):
        await slack_commands.settle()
        [body] = await wait_for_response(sandbox_url, key)
        assert body["replace_original"] is True
    return body


def phone_sized(answer: dict[str, Any]) -> None:
    """A header, at most ten lines, and the context line with the asker's local time."""
    kinds = [b["type"] for b in answer["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "context", kinds
    section = next((b for b in answer["blocks"] if b["type"] == "section"), None)
    if section is not None:
        assert len(section["text"]["text"].splitlines()) <= slack_commands.MAX_LINES
    assert re.search(r"your time \w{3} \d\d:\d\d", block_text(answer))


async def conversations(database: Database, n: int, **values: Any) -> list[int]:
    ids = []
    for i in range(n):
        result = await customer_writes(
            database, f"hg-{i}-{values}", f"cust-{i}-{values}", "help", name=f"Customer {i}"
        )
        if values:
            async with database.session() as session:
                await session.execute(
                    update(Conversation)
                    .where(Conversation.id == result.conversation_id)
                    .values(**values)
                )
                await session.commit()
        ids.append(result.conversation_id)
    return ids


# --- help, typos, strangers, signatures ------------------------------------------------------


async def test_help_unknown_and_bad_arguments_answer_at_once(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int]
) -> None:
    help_ = await hg(slack, sandbox_url, "help")
    assert help_["blocks"][0]["text"]["text"] == "/hg: the team lead's commands"
    assert "`/hg assign <conversation> @member`" in block_text(help_)
    assert (await hg(slack, sandbox_url, ""))["blocks"] == help_["blocks"]  # bare /hg

    unknown = await hg(slack, sandbox_url, "dance")
    assert unknown["blocks"][0]["text"]["text"] == "I don't know `/hg dance`."
    assert "`/hg queue`" in block_text(unknown)  # and what it does know
    for text, problem in (
        ("assign twelve @oliver", "Type `/hg assign <conversation number> @member`."),
        ("assign 12", "Type `/hg assign <conversation number> @member`."),
        ("handoff", "Type `/hg handoff @from` or `/hg handoff @from @to`."),
        ("stats month", "Type `/hg stats`, `/hg stats today` or `… week`."),
        ("queue now", "`/hg queue` takes nothing after it."),
        ("customer", "Type `/hg customer` and an email, a phone or a name."),
    ):
        assert (await hg(slack, sandbox_url, text))["blocks"][0]["text"]["text"] == problem


async def test_a_stranger_is_refused_and_logged(
    slack: httpx.AsyncClient,
    sandbox_url: str,
    people: dict[str, int],
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await conversations(database, 1)
    with caplog.at_level(logging.WARNING, logger="surfaces.slack_commands"):
        for text in ("queue", "assign 1 @oliver"):
            answer = await hg(slack, sandbox_url, text, user=STRANGER)
            assert answer["blocks"][0]["text"]["text"] == "Sorry, this is for the Heliograph team"
            assert "Customer 0" not in block_text(answer)
    assert [r.getMessage() for r in caplog.records] == [
        f"refused /hg {sub} from Slack user {STRANGER}: not an active team member"
        for sub in ("queue", "assign")
    ]
    assert (await _assignments(database)) == 0


async def test_a_member_without_a_slack_id_is_found_by_email_on_first_use(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    ids = await team(database, {"name": "Nia Okafor", "role": "lead", "hours": ALWAYS})
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{sandbox_url}/_sandbox/slack/users",
            json={"id": "U0NIAOKAFO", "real_name": "Nia", "email": "Nia.Okafor@team.example"},
        )
    answer = await hg(slack, sandbox_url, "who", user="U0NIAOKAFO")
    assert answer["blocks"][0]["text"]["text"] == "On shift now: 4"
    assert block_text(answer).splitlines()[-1].startswith("Nia Okafor · your time ")
    async with database.read_session() as session:
        nia = await session.get(TeamMember, ids["Nia"])
    assert nia is not None and nia.slack_user_id == "U0NIAOKAFO"  # kept for next time


async def test_a_bad_signature_is_403_and_nothing_runs(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    [conversation] = await conversations(database, 1)
    url, key = response_url(sandbox_url)
    forged = await post_command(
        slack, f"assign {conversation} @oliver", LEAD, url, secret="not-the-secret"
    )
    assert forged.status_code == 403
    assert "X-Slack-Signature" in forged.text
    await slack_commands.settle()
    assert await wait_for_response(sandbox_url, key, within=0.5) == []
    assert (await _assignments(database)) == 0


async def _assignments(database: Database) -> int:
    async with database.read_session() as session:
        return int((await session.execute(select(func.count()).select_from(Assignment))).one()[0])


# --- the read commands: leads and agents alike ------------------------------------------------


async def test_queue_for_a_lead_and_an_agent(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    old = utcnow() - timedelta(minutes=95)
    [waiting_long] = await conversations(database, 1, waiting_since=old)
    [urgent] = await conversations(database, 1, priority="urgent")
    for user in (LEAD, AGENT):
        answer = await hg(slack, sandbox_url, "queue", user)
        phone_sized(answer)
        assert answer["blocks"][0]["text"]["text"] == "Queue: 2 waiting, oldest 1h 35m"
        lines = answer["blocks"][1]["text"]["text"].splitlines()
        assert lines[0].startswith(f"#{urgent} *Customer 0* · API · urgent · ")
        assert lines[1] == f"#{waiting_long} *Customer 0* · API · normal · 1h 35m"


async def test_who_is_on_shift_with_local_times_and_load(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    [mine] = await conversations(database, 1)
    await give(database, mine, people["Aiko"], utcnow())
    for user in (LEAD, AGENT):
        answer = await hg(slack, sandbox_url, "who", user)
        phone_sized(answer)
        assert answer["blocks"][0]["text"]["text"] == "On shift now: 3"
        text = block_text(answer)
        assert re.search(r"\*Aiko Tanaka\* · APAC · \d\d:\d\d Tokyo · 1/3 · online", text)
        assert re.search(r"\*Lena Petrova\* · EMEA · \d\d:\d\d Moscow · 0/8 · online", text)
    print("\n/hg who ->\n" + block_text(answer))  # the README's transcript


async def test_sla_breaches(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    assert (await hg(slack, sandbox_url, "sla"))["blocks"][0]["text"][
        "text"
    ] == "SLA: nothing past its target"
    late = utcnow() - timedelta(minutes=75)
    [breach] = await conversations(database, 1, created_at=late)
    await give(database, breach, people["Oliver"], late)
    await conversations(database, 1)  # just in
    for user in (LEAD, AGENT):
        answer = await hg(slack, sandbox_url, "sla", user)
        phone_sized(answer)
        assert answer["blocks"][0]["text"]["text"] == "SLA: 1 past the first-response target"
        assert answer["blocks"][1]["text"]["text"] == (
            f"#{breach} *Customer 0* · normal · 1h 15m (target 1h 00m) · Oliver Bennett"
        )


async def test_stats_today_and_week(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    start = utcnow() - timedelta(minutes=1)
    await conversations(
        database,
        3,
        created_at=start,
        first_response_at=start + timedelta(minutes=4),
        channel="telegram",
    )
    await conversations(database, 1, created_at=start - timedelta(days=3), channel="sms")
    for user in (LEAD, AGENT):
        today = await hg(slack, sandbox_url, "stats", user)
        phone_sized(today)
        assert today["blocks"][0]["text"]["text"] == "Stats today: 4 in, 3 new"
        assert "*Telegram* · 3 in · 3 new · 1st reply 4m · resolved 0 in -" in block_text(today)
        week = await hg(slack, sandbox_url, "stats week", user)
        assert week["blocks"][0]["text"]["text"] == "Stats last 7 days: 4 in, 4 new"
        assert "*SMS* · 1 in · 1 new" in block_text(week)


async def test_customer_lookup(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    first = await customer_writes(
        database, "ana-1", "ana", "where is my refund", name="Ana Lima", email="ana@x.org"
    )
    await give(database, first.conversation_id, people["Oliver"], utcnow())
    for user in (LEAD, AGENT):
        answer = await hg(slack, sandbox_url, "customer ana@x.org", user)
        phone_sized(answer)
        assert answer["blocks"][0]["text"]["text"] == "Customer: Ana Lima"
        text = block_text(answer)
        assert "*Ana Lima* · ana@x.org · discovery · LTV 0" in text
        assert f"#{first.conversation_id} API · open · Oliver Bennett" in text
        assert "last contact 0m ago" in text
    nobody = await hg(slack, sandbox_url, "customer Zed Nobody")
    assert nobody["blocks"][0]["text"]["text"] == "No customer matches “Zed Nobody”"


async def test_what_customers_typed_cannot_format_or_mention_in_the_answer(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    await customer_writes(database, "bob-1", "bob", "hi", name="Bob <!channel> & *Co*")
    queue = await hg(slack, sandbox_url, "queue")
    assert "*Bob &lt;!channel&gt; &amp; *Co** · API" in block_text(queue)
    assert "<!channel>" not in queue["text"]


# --- the commands that change things: leads only --------------------------------------------


async def test_assign_by_a_lead_and_refused_to_an_agent(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    [conversation] = await conversations(database, 1)
    refused = await hg(slack, sandbox_url, f"assign {conversation} <@{AGENT}|oliver>", AGENT)
    phone_sized(refused)
    assert refused["blocks"][0]["text"]["text"] == "Sorry, /hg assign is for team leads"
    assert await _assignments(database) == 0

    done = await hg(slack, sandbox_url, f"assign #{conversation} <@{AGENT}|oliver>", LEAD)
    phone_sized(done)
    assert done["blocks"][0]["text"]["text"] == f"#{conversation} assigned to Oliver Bennett"
    async with database.read_session() as session:
        row = (await session.execute(select(Assignment))).scalar_one()
        assignee = await session.get(Conversation, conversation)
    assert (row.kind, row.member_id, row.by_member_id) == (
        "manual",
        people["Oliver"],
        people["Lena"],
    )
    assert assignee is not None and assignee.assignee_id == people["Oliver"]

    again = await hg(slack, sandbox_url, f"assign {conversation} @oliver.bennett@team.example")
    assert again["blocks"][0]["text"]["text"] == f"#{conversation} is Oliver Bennett's already"
    missing = await hg(slack, sandbox_url, "assign 999 @aiko")
    assert block_text(missing).splitlines()[:2] == [
        "Could not do /hg assign",
        "conversation 999 does not exist",
    ]
    nobody = await hg(slack, sandbox_url, f"assign {conversation} @zed")
    assert "Nobody active on the team is called @zed." in block_text(nobody)
    assert await _assignments(database) == 1


async def test_handoff_by_a_lead_and_refused_to_an_agent(
    slack: httpx.AsyncClient, sandbox_url: str, people: dict[str, int], database: Database
) -> None:
    ids = await conversations(database, 2)
    for conversation in ids:
        await give(database, conversation, people["Oliver"], utcnow())
    refused = await hg(slack, sandbox_url, "handoff @oliver @aiko", AGENT)
    assert refused["blocks"][0]["text"]["text"] == "Sorry, /hg handoff is for team leads"

    done = await hg(slack, sandbox_url, "handoff @oliver @aiko", LEAD)
    phone_sized(done)
    assert done["blocks"][0]["text"]["text"] == "Handed over 2 of Oliver Bennett's conversations"
    assert done["blocks"][1]["text"]["text"].splitlines() == [f"#{c} → Aiko Tanaka" for c in ids]
    async with database.read_session() as session:
        rows = (await session.execute(select(Handoff).order_by(Handoff.id))).scalars().all()  # type: ignore[arg-type]
    assert [(h.conversation_id, h.kind, h.to_member_id) for h in rows] == [
        (c, "manual", people["Aiko"]) for c in ids
    ]
    empty = await hg(slack, sandbox_url, "handoff @oliver")
    assert empty["blocks"][0]["text"]["text"] == "Oliver Bennett has no open conversations"


# --- the 3-second rule and the response_url ---------------------------------------------------


async def test_slow_database_still_acknowledged_within_3_seconds(
    pg_database: Database,
    sandbox_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another connection holds ACCESS EXCLUSIVE on team_member (the first table /hg reads)
    for 5 s: Slack gets "working on it" at once, the answer arrives at response_url later."""
    from service.app import create_app

    slack_env(monkeypatch, f"{sandbox_url}/slack/api/")
    await team(pg_database, {**LENA, "hours": ALWAYS, "slack_user_id": LEAD})
    dsn = get_settings().database_url.replace("postgresql+asyncpg", "postgresql")
    locker = await asyncpg.connect(dsn)
    transport = httpx.ASGITransport(app=create_app())

    async def hold_lock(ready: asyncio.Event) -> None:
        async with locker.transaction():  # rolled back (lock released) when this ends
            await locker.execute("LOCK TABLE team_member IN ACCESS EXCLUSIVE MODE")
            ready.set()
            await asyncio.sleep(LOCK_S)

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ready = asyncio.Event()
            holder = asyncio.create_task(hold_lock(ready))
            await ready.wait()
            locked_at = time.time()
            url, key = response_url(sandbox_url)
            ack = await post_command(client, "who", LEAD, url)
            acked_in = time.time() - locked_at
            assert ack.status_code == 200
            assert ack.json()["blocks"][0]["text"]["text"] == "Working on /hg who…"
            assert acked_in < 3.0, f"acknowledged after {acked_in:.2f}s"
            assert await wait_for_response(sandbox_url, key, within=0.1) == []  # not yet
            [answer] = await wait_for_response(sandbox_url, key, within=30)
            await holder
            await slack_commands.settle()
    finally:
        await locker.close()
        reset_settings()
    answered_in = answer["at"] - locked_at  # the sandbox's clock: the same machine's
    assert answer["blocks"][0]["text"]["text"] == "On shift now: 1"
    assert answer["replace_original"] is True
    assert answered_in >= LOCK_S - 0.5  # it waited for the lock: the slow part was real


async def test_a_failed_response_url_post_is_retried_without_repeating_the_change(
    slack: httpx.AsyncClient,
    sandbox_url: str,
    people: dict[str, int],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slack_commands, "ACK_BUDGET_S", 0)  # every answer goes the slow way
    [conversation] = await conversations(database, 1)
    async with httpx.AsyncClient() as http:
        await http.post(f"{sandbox_url}/_sandbox/slack/responses/fail", json={"count": 1})
    url, key = response_url(sandbox_url)
    ack = await post_command(slack, f"assign {conversation} @aiko", LEAD, url)
    assert ack.json()["blocks"][0]["text"]["text"] == "Working on /hg assign…"
    await slack_commands.settle()
    [answer] = await wait_for_response(sandbox_url, key)
    assert answer["blocks"][0]["text"]["text"] == f"#{conversation} assigned to Aiko Tanaka"
    assert await _assignments(database) == 1  # the retry re-sent the answer, not the change


@pytest.mark.slow
async def test_a_lead_types_hg_who_in_the_sandbox_across_processes(
    sandbox_url: str, sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    """``heliograph serve`` and the fake Slack as two processes: the sandbox plays the lead
    typing ``/hg who`` (a signed request), and shows what Slack would show them."""
    await team(sqlite_database, {**LENA, "hours": ALWAYS, "slack_user_id": LEAD})
    service = start_heliograph(
        ["serve"],
        {
            "HELIOGRAPH_DATABASE_URL": sqlite_url,
            "HELIOGRAPH_SLACK_BOT_TOKEN": BOT_TOKEN,
            "HELIOGRAPH_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "HELIOGRAPH_SLACK_API_BASE": f"{sandbox_url}/slack/api/",
            "HELIOGRAPH_RUN_SCHEDULER": "false",
        },
        tmp_path / "serve.log",
        SERVICE_PORT,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            typed = await http.post(
                f"{sandbox_url}/_sandbox/command/slack", json={"user_id": LEAD, "text": "who"}
            )
    finally:
        service.stop()
    assert typed.status_code == 200, typed.text
    played = typed.json()
    assert played["status"] == 200, service.log()[-2000:]
    answer = played["answer"]
    if answer["blocks"][0]["text"]["text"].startswith("Working on"):  # a slow machine
        [answer] = await wait_for_response(sandbox_url, played["key"])
    assert answer["blocks"][0]["text"]["text"] == "On shift now: 1"
    assert re.search(
        r"\*Lena Petrova\* · EMEA · \d\d:\d\d Moscow · 0/8 · online", block_text(answer)
    )
