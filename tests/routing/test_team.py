"""The team file: importing members, errors that say who and what, and API tokens."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import select, text

from heliograph.db import Database
from routing.models import ApiToken
from routing.team import (
    MemberNotFound,
    TeamFileError,
    authenticate,
    create_token,
    import_team,
    list_members,
    parse_team,
)

TEAM = textwrap.dedent(
    """
    members:
      - name: Aisyah Rahman
        email: Aisyah@Team.Example
        role: agent
        timezone: Asia/Kuala_Lumpur
        region: apac
        hours:
          mon: [["09:00", "13:00"], ["14:00", "18:00"]]
          fri: [["09:00", "24:00"]]
        languages: [ms, EN, " "]
        expertise: [billing]
        capacity: 6
        slack_user_id: U01AISYAH
      - name: Tom Baker
        email: tom@team.example
        role: lead
        timezone: Europe/London
    """
)


async def test_a_valid_file_creates_members(database: Database) -> None:
    async with database.session() as session:
        assert await import_team(session, TEAM) == (2, 0, 0, [])
        await session.commit()
    async with database.read_session() as session:
        members = await list_members(session)
    aisyah, tom = members
    assert (aisyah.email, aisyah.role, aisyah.timezone) == (
        "aisyah@team.example",
        "agent",
        "Asia/Kuala_Lumpur",
    )
    assert aisyah.weekly_hours == {
        "mon": [["09:00", "13:00"], ["14:00", "18:00"]],
        "fri": [["09:00", "24:00"]],
    }
    assert (aisyah.languages, aisyah.expertise, aisyah.capacity) == (["ms", "en"], ["billing"], 6)
    assert aisyah.slack_user_id == "U01AISYAH"
    assert (tom.role, tom.timezone, tom.capacity, tom.weekly_hours) == (
        "lead",
        "Europe/London",
        8,
        {},
    )


async def test_reimport_updates_by_email(database: Database) -> None:
    async with database.session() as session:
        await import_team(session, TEAM)
        await session.commit()
    changed = TEAM.replace("role: lead", "role: admin").replace(
        "email: Aisyah@Team.Example", "email: aisyah@team.example"
    )
    changed += "  - name: Olga Ivanova\n    email: olga@team.example\n    timezone: Europe/Moscow\n"
    async with database.session() as session:
        assert await import_team(session, changed) == (1, 2, 0, [])
        await session.commit()
    async with database.read_session() as session:
        members = await list_members(session)
    assert [(m.email, m.role) for m in members] == [
        ("aisyah@team.example", "agent"),
        ("tom@team.example", "admin"),
        ("olga@team.example", "agent"),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("timezone: Europe/London", "timezone: Europe/Londn"),
            "member #2 (tom@team.example): timezone: Value error, unknown IANA time zone "
            "'Europe/Londn' (e.g. Europe/London)",
        ),
        (
            ("role: lead", "role: boss"),
            "member #2 (tom@team.example): role: Value error, role must be one of agent, "
            "lead, admin, exec",
        ),
        (
            ('fri: [["09:00", "24:00"]]', 'fri: [["09:00", "25:00"]]'),
            "member #1 (Aisyah@Team.Example): hours: Value error, fri: a period is "
            "[\"HH:MM\", \"HH:MM\"], got ['09:00', '25:00']",
        ),
        (
            ('fri: [["09:00", "24:00"]]', 'fry: [["09:00", "17:00"]]'),
            "member #1 (Aisyah@Team.Example): hours: Value error, unknown day 'fry'",
        ),
        (("capacity: 6", "capacity: lots"), "member #1 (Aisyah@Team.Example): capacity:"),
        (
            ("email: tom@team.example", "email: tom"),
            "member #2 (tom): email: value is not a valid email address",
        ),
        (
            ("timezone: Europe/London", "timezon: Europe/London"),
            "member #2 (tom@team.example): timezon: Extra inputs are not permitted",
        ),
        (
            ("email: tom@team.example", "email: AISYAH@team.example"),
            "member #2 (Tom Baker): email: aisyah@team.example appears twice (members #1 and #2)",
        ),
    ],
)
def test_errors_name_the_member_and_the_field(change: tuple[str, str], expected: str) -> None:
    bad = TEAM.replace(*change)
    assert bad != TEAM
    with pytest.raises(TeamFileError) as caught:
        parse_team(bad)
    assert expected in str(caught.value)


async def test_a_bad_file_imports_nobody(database: Database) -> None:
    bad = TEAM.replace("role: lead", "role: boss")  # the second member is wrong
    async with database.session() as session:
        with pytest.raises(TeamFileError, match="member #2"):
            await import_team(session, bad)
        assert await list_members(session) == []  # not even the valid first one


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("members: [", "not valid YAML"),
        ("team: []", "top-level 'members:' list"),
        ("- just a list", "top-level 'members:' list"),
        ("", "top-level 'members:' list"),
        ("members:\n  - just a string", "member #1"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused(content: str, expected: str) -> None:
    with pytest.raises(TeamFileError, match=expected):
        parse_team(content)


async def test_a_token_authenticates_and_is_stored_hashed(database: Database) -> None:
    async with database.session() as session:
        await import_team(session, TEAM)
        token = await create_token(session, " TOM@team.example", label="laptop")
        await session.commit()
    assert token.startswith("hg_") and len(token) > 40
    async with database.read_session() as session:
        member = await authenticate(session, token)
        assert member is not None and member.email == "tom@team.example"
        assert await authenticate(session, token + "x") is None
        assert await authenticate(session, "") is None
        rows = (await session.execute(text("SELECT * FROM api_token"))).all()
        stored = (await session.execute(select(ApiToken))).scalar_one()
    assert len(rows) == 1
    assert not any(token in str(value) for value in rows[0])
    assert not any(token[3:] in str(value) for value in rows[0])
    assert stored.label == "laptop" and len(stored.token_hash) == 64
    path = database.settings.sqlite_path()
    if path is not None:  # not even in the database file or its write-ahead log
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                assert token.encode() not in file.read_bytes()


async def test_two_tokens_for_one_member_both_work(sqlite_database: Database) -> None:
    async with sqlite_database.session() as session:
        await import_team(session, TEAM)
        first = await create_token(session, "tom@team.example")
        second = await create_token(session, "tom@team.example")
        await session.commit()
    assert first != second
    async with sqlite_database.read_session() as session:
        assert (await authenticate(session, first)) is not None
        assert (await authenticate(session, second)) is not None


async def test_a_token_for_an_unknown_email_is_refused(sqlite_database: Database) -> None:
    async with sqlite_database.session() as session:
        with pytest.raises(MemberNotFound, match=r"no team member with email nobody@x\.example"):
            await create_token(session, "nobody@x.example")
