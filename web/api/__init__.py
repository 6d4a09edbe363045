"""REST API v1 (bearer-token auth; OpenAPI at /docs)."""

from fastapi import APIRouter

from web.api import (
    admin,
    agent_links,
    canned,
    conversations,
    crm,
    customers,
    handoff,
    languages,
    routing,
    team,
    tokens,
)

router = APIRouter(prefix="/api/v1")
for module in (
    customers,
    conversations,
    languages,
    team,
    agent_links,
    routing,
    handoff,
    crm,
    admin,
    tokens,
    canned,
):
    router.include_router(module.router)
