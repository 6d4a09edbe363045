"""/metrics: per-route latency and answers by status class, labelled by the route's
template (not the raw path), beside the figures from the database."""

from __future__ import annotations

import re

import httpx

from heliograph.db import Database
from tests.utils.factories import member_with_token, receive

ROUTE = "/api/v1/conversations/{conversation_id}"


def value(metrics: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` in a Prometheus text page (0 when absent)."""
    for line in metrics.splitlines():
        match = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    return 0.0


async def test_metrics_show_each_routes_latency_and_errors(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, auth = await member_with_token(database)
    conv = await receive(database, "m1", "cust-1")
    before = (await client.get("/metrics")).text
    found = await client.get(f"/api/v1/conversations/{conv.conversation_id}", headers=auth)
    assert found.status_code == 200
    for missing in (999_001, 999_002):
        assert (
            await client.get(f"/api/v1/conversations/{missing}", headers=auth)
        ).status_code == 404
    await client.get(f"/api/v1/conversations/{conv.conversation_id}")  # no token: 401

    page = await client.get("/metrics")
    assert page.status_code == 200
    after = page.text

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "GET", "route": ROUTE}
    assert grew("heliograph_http_responses_total", **ok, status="2xx") == 1
    assert grew("heliograph_http_responses_total", **ok, status="4xx") == 3
    assert grew("heliograph_http_request_duration_seconds_count", **ok) == 4
    assert grew("heliograph_http_request_duration_seconds_bucket", **ok, le="+Inf") == 4
    assert 0 < grew("heliograph_http_request_duration_seconds_sum", **ok) < 10
    # One series per template: the ids never become labels.
    assert (
        "/999001" not in after  # in a path (a duration's digits may hold 999001 by chance)
        and f'route="/api/v1/conversations/{conv.conversation_id}"' not in after
    )
    # The database's figures are still there.
    assert value(after, "heliograph_conversations", status="open") == 1


async def test_refusals_are_counted_by_limit(client: httpx.AsyncClient, database: Database) -> None:
    from service.app import create_app

    # The operator's scraper, from another address than the one that gets locked out.
    scraper = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(), client=("10.0.0.9", 9100)),
        base_url="http://testserver",
    )
    before = (await scraper.get("/metrics")).text
    wrong = {"Authorization": "Bearer hg_guessed"}
    statuses = [
        (await client.get("/api/v1/team-members/me", headers=wrong)).status_code for _ in range(31)
    ]
    assert statuses == [401] * 30 + [429]  # the default: 30 failed authentications a minute
    page = await scraper.get("/metrics")
    await scraper.aclose()
    assert page.status_code == 200  # another address is not locked out
    after = page.text
    limited = value(after, "heliograph_rate_limited_total", limit="failed_auth")
    assert limited - value(before, "heliograph_rate_limited_total", limit="failed_auth") == 1
    refused = {"method": "GET", "route": "(refused)", "status": "4xx"}
    assert value(after, "heliograph_http_responses_total", **refused) >= 1
