"""Taking access away from the command line: ``revoke-token``, ``tokens``, ``deactivate``
/ ``activate``, ``create-token --expires-in-days`` and ``import-team`` without a member."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from service.cli import main
from tests.utils.team_yaml import TEAM

ONLY_AISYAH = "members:\n  - name: Aisyah Rahman\n    email: aisyah@team.example\n"


def who_am_i(token: str) -> tuple[int, str]:
    """``GET /api/v1/team-members/me`` with the token, as a client would: status and body."""

    async def ask() -> tuple[int, str]:
        from heliograph.db import close_db
        from service.app import create_app

        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            answer = await c.get(
                "/api/v1/team-members/me", headers={"Authorization": f"Bearer {token}"}
            )
        await close_db()
        return answer.status_code, answer.text

    return asyncio.run(ask())


def new_token(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()  # what came before
    assert main(["create-token", *args]) == 0
    return capsys.readouterr().out.strip()


def test_revoke_token_by_id_or_by_the_token(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "team.yaml").write_text(TEAM)
    assert main(["import-team", str(tmp_path / "team.yaml")]) == 0
    ops = new_token(capsys, "tom@team.example", "--label", "ops", "--expires-in-days", "30")
    ci = new_token(capsys, "tom@team.example", "--label", "ci")
    assert who_am_i(ops)[0] == who_am_i(ci)[0] == 200

    assert main(["tokens"]) == 0
    listing = capsys.readouterr().out
    lines = [line.split("\t") for line in listing.splitlines()]
    assert [line[:3] for line in lines] == [
        ["1", "tom@team.example", "ops"],
        ["2", "tom@team.example", "ci"],
    ]
    assert lines[0][5].startswith("expires 20") and lines[1][5] == "expires -"
    assert lines[0][4].startswith("used 20") and lines[0][6] == "revoked -"  # who_am_i used it
    assert ops not in listing and ci not in listing

    assert main(["revoke-token", "1"]) == 0
    assert main(["revoke-token", ci]) == 0
    assert main(["revoke-token", "1"]) == 0
    assert capsys.readouterr().out == (
        "revoked: it is refused from its next request on\n"
        "revoked: it is refused from its next request on\n"
        "revoked already\n"
    )
    for token in (ops, ci):
        status, body = who_am_i(token)
        assert status == 401 and "the token was revoked on" in body

    assert main(["revoke-token", "99"]) == 2
    assert main(["revoke-token", "hg_not-a-token"]) == 2
    assert main(["create-token", "tom@team.example", "--expires-in-days", "0"]) == 2
    assert capsys.readouterr().err == (
        "error: token 99 does not exist\n"
        "error: that token does not exist\n"
        "error: a token lives 1 to 3650 days, not 0\n"
    )


def test_deactivate_activate_and_import_team_without_a_member(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, partial = tmp_path / "team.yaml", tmp_path / "aisyah.yaml"
    full.write_text(TEAM)
    partial.write_text(ONLY_AISYAH)
    assert main(["import-team", str(full)]) == 0
    token = new_token(capsys, "tom@team.example")

    assert main(["deactivate", "Tom@Team.Example"]) == 0
    assert main(["deactivate", "tom@team.example"]) == 0
    assert capsys.readouterr().out == (
        "Tom@Team.Example is deactivated: tokens, Slack and Telegram refused; "
        "their open conversations go back to the queue when the workers run\n"
        "tom@team.example is deactivated already\n"
    )
    status, body = who_am_i(token)
    assert status == 401 and "(tom@team.example) is deactivated" in body
    assert main(["create-token", "tom@team.example"]) == 2
    assert main(["deactivate", "nobody@team.example"]) == 2
    assert capsys.readouterr().err == (
        "error: tom@team.example is deactivated; activate them before a token\n"
        "error: no team member with email nobody@team.example\n"
    )
    assert main(["import-team", str(full)]) == 0  # listed again: still deactivated
    assert capsys.readouterr().out.splitlines()[1] == (
        "still deactivated (`heliograph activate EMAIL`): tom@team.example"
    )
    assert main(["activate", "tom@team.example"]) == 0
    assert capsys.readouterr().out == (
        "tom@team.example is active again: their tokens and linked chats work\n"
    )
    assert who_am_i(token)[0] == 200

    assert main(["import-team", str(partial), "--keep-missing"]) == 0
    assert who_am_i(token)[0] == 200
    assert main(["import-team", str(partial)]) == 0
    assert capsys.readouterr().out == (
        "team imported: 0 created, 1 updated, 0 deactivated (not in the file)\n"
        "team imported: 0 created, 1 updated, 1 deactivated (not in the file)\n"
    )
    assert who_am_i(token)[0] == 401
