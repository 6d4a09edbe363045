"""Access that can be taken away: deactivating a member (the API and the team file), API
tokens that admins list, issue and revoke, expiry, and the last-used time."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from heliograph.db import Database, utcnow
from heliograph.models import AuditEvent, Job
from inbox.models import Conversation
from routing.bus import RELEASE_MEMBER
from routing.models import ApiToken, Assignment, TeamMember
from routing.team import create_token, import_team
from routing.tokens import AccessError
from tests.utils.factories import member_with_token, receive
from tests.utils.jobs import run_jobs
from tests.utils.routing_world import team

API = "/api/v1"


async def audit(database: Database, action: str) -> list[AuditEvent]:
    async with database.read_session() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)  # type: ignore[arg-type]
        return list((await session.execute(stmt)).scalars().all())


async def token_of(database: Database, member_id: int) -> dict[str, str]:
    async with database.session() as session:
        member = await session.get(TeamMember, member_id)
        assert member is not None
        secret = await create_token(session, member.email)
        await session.commit()
    return {"Authorization": f"Bearer {secret}"}


async def row(database: Database, model: type, ident: int) -> object:
    async with database.read_session() as session:
        found = await session.get(model, ident)
        assert found is not None
        return found


# --- deactivation ---------------------------------------------------------------------


async def test_a_deactivated_member_is_refused_at_once_and_their_conversation_moves_on(
    client: httpx.AsyncClient, database: Database
) -> None:
    admin, admin_auth = await member_with_token(database, "admin", "Ann Admin")
    ids = await team(database, {"name": "Ada Lovelace"})
    ada_auth = await token_of(database, ids["Ada"])
    held = (await receive(database, "m1", "cust-1")).conversation_id
    await run_jobs(database)
    assert (await row(database, Conversation, held)).assignee_id == ids["Ada"]  # type: ignore[attr-defined]
    ids |= await team(database, {"name": "Ben Okafor"})

    done = await client.post(f"{API}/team-members/{ids['Ada']}/deactivate", headers=admin_auth)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["changed"], body["open_conversations"], body["member"]["active"]) == (
        True,
        1,
        False,
    )
    refused = await client.get(f"{API}/team-members/me", headers=ada_auth)  # no job has run
    assert refused.status_code == 401
    assert refused.json()["error"] == (
        "the token's team member (ada.lovelace@team.example) is deactivated"
    )

    await run_jobs(database)  # her open conversation goes back to the queue, and on to Ben
    assert (await row(database, Conversation, held)).assignee_id == ids["Ben"]  # type: ignore[attr-defined]
    async with database.read_session() as session:
        history = (
            await session.execute(
                select(Assignment.member_id, Assignment.kind, Assignment.reason)  # type: ignore[call-overload]
                .where(Assignment.conversation_id == held)
                .order_by(Assignment.id)
            )
        ).all()
    assert history[-2] == (None, "queued", "back to the queue: Ada Lovelace was deactivated")
    assert history[-1][:2] == (ids["Ben"], "policy")
    fresh = (await receive(database, "m2", "cust-2")).conversation_id
    await run_jobs(database)
    assert (await row(database, Conversation, fresh)).assignee_id == ids["Ben"]  # type: ignore[attr-defined]

    (event,) = await audit(database, "member.deactivated")
    assert (event.actor, event.subject_type, event.subject_id) == (
        f"member:{admin.id}",
        "team_member",
        ids["Ada"],
    )
    again = await client.post(f"{API}/team-members/{ids['Ada']}/deactivate", headers=admin_auth)
    assert (
        again.json()["changed"] is False and len(await audit(database, "member.deactivated")) == 1
    )

    back = await client.post(f"{API}/team-members/{ids['Ada']}/activate", headers=admin_auth)
    assert back.status_code == 200 and back.json()["member"]["active"] is True
    assert (await client.get(f"{API}/team-members/me", headers=ada_auth)).status_code == 200
    assert [e.actor for e in await audit(database, "member.activated")] == [f"member:{admin.id}"]


async def test_only_admins_change_access_and_not_their_own(
    client: httpx.AsyncClient, database: Database
) -> None:
    admin, admin_auth = await member_with_token(database, "admin", "Ann Admin")
    _, lead_auth = await member_with_token(database, "lead", "Leo Lead")
    path = f"{API}/team-members/{admin.id}/deactivate"
    refused = await client.post(path, headers=lead_auth)
    assert refused.status_code == 403
    assert refused.json()["error"] == "this needs the role admin; you are lead"
    own = await client.post(path, headers=admin_auth)
    assert (own.status_code, own.json()) == (
        409,
        {"error": "you cannot deactivate yourself; ask another admin"},
    )
    missing = await client.post(f"{API}/team-members/2147483647/deactivate", headers=admin_auth)
    assert missing.status_code == 404
    assert (
        await client.post(f"{API}/team-members/0/activate", headers=admin_auth)
    ).status_code == 422
    assert (await client.get(f"{API}/team-members/me", headers=lead_auth)).status_code == 200


TEAM = textwrap.dedent(
    """
    members:
      - name: Aisyah Rahman
        email: aisyah@team.example
      - name: Tom Baker
        email: tom@team.example
        role: lead
    """
)
ONLY_AISYAH = "members:\n  - name: Aisyah Rahman\n    email: aisyah@team.example\n"


async def test_a_member_left_out_of_the_team_file_is_deactivated(
    client: httpx.AsyncClient, database: Database
) -> None:
    async with database.session() as session:
        await import_team(session, TEAM)
        await session.commit()
    async with database.read_session() as session:
        tom = (
            await session.execute(select(TeamMember).where(TeamMember.email == "tom@team.example"))  # type: ignore[arg-type]
        ).scalar_one()
    tom_auth = await token_of(database, tom.id)  # type: ignore[arg-type]

    async with database.session() as session:
        kept = await import_team(session, ONLY_AISYAH, keep_missing=True)
        await session.commit()
    assert kept == (0, 1, 0, [])
    assert (await client.get(f"{API}/team-members/me", headers=tom_auth)).status_code == 200

    async with database.session() as session:
        assert await import_team(session, ONLY_AISYAH) == (0, 1, 1, [])
        await session.commit()
    assert (await client.get(f"{API}/team-members/me", headers=tom_auth)).status_code == 401
    (event,) = await audit(database, "member.deactivated")
    assert (event.actor, event.subject_id, event.details) == (
        "import-team",
        tom.id,
        {"reason": "not in the team file"},
    )
    async with database.read_session() as session:
        jobs = (
            await session.execute(select(Job.payload).where(Job.kind == RELEASE_MEMBER.name))
        ).all()  # type: ignore[call-overload]
    assert [j[0] for j in jobs] == [{"member_id": tom.id}]

    # Listed again, he stays deactivated until someone activates him on purpose.
    async with database.session() as session:
        assert await import_team(session, TEAM) == (0, 2, 0, ["tom@team.example"])
        await session.commit()
    assert (await client.get(f"{API}/team-members/me", headers=tom_auth)).status_code == 401


# --- tokens ---------------------------------------------------------------------------


async def test_admins_list_issue_and_revoke_tokens_and_never_see_a_secret(
    client: httpx.AsyncClient, database: Database
) -> None:
    admin, admin_auth = await member_with_token(database, "admin", "Ann Admin")
    agent, agent_auth = await member_with_token(database, "agent", "Ada Agent")

    listed = await client.get(f"{API}/tokens", headers=admin_auth)
    assert listed.status_code == 200
    assert [(t["member_email"], t["revoked_at"]) for t in listed.json()] == [
        (admin.email, None),
        (agent.email, None),
    ]
    assert set(listed.json()[0]) == {
        "id",
        "member_id",
        "member_name",
        "member_email",
        "label",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    }
    async with database.read_session() as session:
        hashes = (await session.execute(select(ApiToken.token_hash))).scalars().all()  # type: ignore[call-overload]
    for secret in [admin_auth["Authorization"][7:], agent_auth["Authorization"][7:], *hashes]:
        assert secret not in listed.text

    for method, path in (("GET", "/tokens"), ("POST", "/tokens"), ("DELETE", "/tokens/1")):
        body = {"member_id": agent.id} if method == "POST" else None
        answer = await client.request(method, API + path, json=body, headers=agent_auth)
        assert answer.status_code == 403, (method, path)

    made = await client.post(
        f"{API}/tokens",
        json={"member_id": agent.id, "label": "zapier", "expires_in_days": 30},
        headers=admin_auth,
    )
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["token"].startswith("hg_") and created["label"] == "zapier"
    assert created["expires_at"][:10] == f"{utcnow() + timedelta(days=30):%Y-%m-%d}"
    zapier = {"Authorization": f"Bearer {created['token']}"}
    me = await client.get(f"{API}/team-members/me", headers=zapier)
    assert me.status_code == 200 and me.json()["email"] == agent.email
    again = await client.get(f"{API}/tokens", headers=admin_auth, params={"member_id": agent.id})
    assert [t["label"] for t in again.json()] == ["", "zapier"]
    assert created["token"] not in again.text

    gone = await client.delete(f"{API}/tokens/{created['id']}", headers=admin_auth)
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    refused = await client.get(f"{API}/team-members/me", headers=zapier)
    assert refused.status_code == 401 and refused.json()["error"].startswith(
        "the token was revoked on "
    )
    twice = await client.post(f"{API}/tokens/{created['id']}/revoke", headers=admin_auth)
    assert twice.json()["revoked_at"] == gone.json()["revoked_at"]  # nothing changed
    assert (await client.delete(f"{API}/tokens/424242", headers=admin_auth)).status_code == 404
    assert (await client.delete(f"{API}/tokens/0", headers=admin_auth)).status_code == 422

    assert [(e.actor, e.subject_id) for e in await audit(database, "token.revoked")] == [
        (f"member:{admin.id}", created["id"])
    ]
    issued = [e for e in await audit(database, "token.created") if e.actor != "cli"]
    assert [(e.actor, e.subject_id, e.details) for e in issued] == [
        (f"member:{admin.id}", created["id"], {"member_id": agent.id, "label": "zapier"})
    ]


async def test_no_token_for_a_deactivated_member_and_no_silly_expiry(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, admin_auth = await member_with_token(database, "admin", "Ann Admin")
    agent, _ = await member_with_token(database, "agent", "Ada Agent")
    too_long = {"member_id": agent.id, "expires_in_days": 3651}
    assert (
        await client.post(f"{API}/tokens", json=too_long, headers=admin_auth)
    ).status_code == 422
    async with database.session() as session:
        with pytest.raises(AccessError, match="a token lives 1 to 3650 days, not 0"):
            await create_token(session, agent.email, expires_in_days=0)
        await session.execute(
            update(TeamMember).values(active=False).where(TeamMember.id == agent.id)
        )  # type: ignore[arg-type]
        await session.commit()
    refused = await client.post(f"{API}/tokens", json={"member_id": agent.id}, headers=admin_auth)
    assert (refused.status_code, refused.json()) == (
        409,
        {"error": "ada.agent@team.example is deactivated; activate them before a token"},
    )


async def test_an_expired_token_says_when_it_expired(
    client: httpx.AsyncClient, database: Database
) -> None:
    agent, _ = await member_with_token(database)
    async with database.session() as session:
        secret = await create_token(session, agent.email, "ci", expires_in_days=1)
        await session.commit()
    auth = {"Authorization": f"Bearer {secret}"}
    assert (await client.get(f"{API}/team-members/me", headers=auth)).status_code == 200

    ended = (utcnow() - timedelta(minutes=5)).replace(microsecond=0)
    async with database.session() as session:
        await session.execute(
            update(ApiToken).where(ApiToken.label == "ci").values(expires_at=ended)
        )  # type: ignore[arg-type]
        await session.commit()
    refused = await client.get(f"{API}/team-members/me", headers=auth)
    assert refused.status_code == 401
    assert refused.json()["error"] == f"the token expired on {ended:%Y-%m-%d %H:%M} UTC"


async def test_the_last_use_is_kept_to_the_minute_without_a_write_per_request(
    client: httpx.AsyncClient, database: Database
) -> None:
    agent, auth = await member_with_token(database)

    async def last_used() -> object:
        async with database.read_session() as session:
            return (await session.execute(select(ApiToken.last_used_at))).scalar_one()  # type: ignore[call-overload]

    assert await last_used() is None
    before = utcnow()
    await client.get(f"{API}/team-members/me", headers=auth)
    first = await last_used()
    assert first is not None and first.replace(tzinfo=before.tzinfo) >= before  # type: ignore[attr-defined]
    for _ in range(3):
        await client.get(f"{API}/team-members/me", headers=auth)
    assert await last_used() == first  # within the minute: read only

    long_ago = utcnow() - timedelta(minutes=2)
    async with database.session() as session:
        await session.execute(update(ApiToken).values(last_used_at=long_ago))
        await session.commit()
    await client.get(f"{API}/team-members/me", headers=auth)
    latest = await last_used()
    assert latest is not None and latest.replace(tzinfo=long_ago.tzinfo) > long_ago  # type: ignore[attr-defined]
    listed_by = await member_with_token(database, "admin", "Ann Admin")
    tokens = (await client.get(f"{API}/tokens", headers=listed_by[1])).json()
    assert tokens[0]["last_used_at"] is not None and tokens[0]["member_id"] == agent.id
