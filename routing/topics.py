"""Topic tags for a conversation: keyword rules on inbound text, and the customer's programs.

Rules come from ``HELIOGRAPH_ROUTING_TOPIC_KEYWORDS`` (JSON ``{"tag": ["word", ...]}``).
A keyword matches whole words, case-insensitively; ``"refund*"`` also matches words that
start with it (refunded, refunds); a keyword of several words matches that phrase.

Programs: ``program_tag_sources`` holds ``async def tags(session, customer_id) -> list[str]``
functions; the CRM's (the categories and codes of the customer's active enrollments) is
registered below, so a student of a "body" program reaches someone who knows "body".
A source may also register its form for many customers in ``program_tag_batches`` (the
CRM's does): a batch of messages then reads every customer's programs in one query.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.programs import program_tags, program_tags_many

ProgramTagSource = Callable[[AsyncSession, int], Awaitable[list[str]]]
ProgramTagBatch = Callable[[AsyncSession, list[int]], Awaitable[dict[int, list[str]]]]
program_tag_sources: list[ProgramTagSource] = []
# A source's form for many customers at once (one query for a batch of messages).
program_tag_batches: dict[ProgramTagSource, ProgramTagBatch] = {}


def _pattern(keyword: str) -> str:
    keyword = keyword.strip().lower()
    prefix = keyword.endswith("*")
    words = keyword.rstrip("*").split()
    body = r"\s+".join(re.escape(w) for w in words)
    return rf"\b{body}\w*" if prefix else rf"\b{body}\b"


@lru_cache(maxsize=32)
def _compiled(rules: tuple[tuple[str, tuple[str, ...]], ...]) -> list[tuple[str, re.Pattern[str]]]:
    compiled = []
    for tag, keywords in rules:
        patterns = [_pattern(k) for k in keywords if k.strip().rstrip("*")]
        if patterns:
            compiled.append((tag.strip().lower(), re.compile("|".join(patterns), re.IGNORECASE)))
    return compiled


def tags_for_text(text: str, rules: Mapping[str, Sequence[str]]) -> list[str]:
    """The tags whose keywords occur in ``text``, in the rules' order."""
    if not text:
        return []
    key = tuple((tag, tuple(words)) for tag, words in rules.items())
    return [tag for tag, pattern in _compiled(key) if pattern.search(text)]


async def tags_for_programs(session: AsyncSession, customer_id: int) -> list[str]:
    """Tags from the programs the customer is enrolled in (every registered source)."""
    return (await tags_for_programs_many(session, [customer_id]))[customer_id]


async def tags_for_programs_many(
    session: AsyncSession, customer_ids: Iterable[int]
) -> dict[int, list[str]]:
    """``tags_for_programs`` for many customers: one call of each source's batch form
    (``program_tag_batches``) where it has one, else one call per customer."""
    ids = list(dict.fromkeys(customer_ids))
    found: dict[int, list[str]] = {i: [] for i in ids}
    for source in program_tag_sources:
        many = program_tag_batches.get(source)
        if many is not None:
            by_customer = await many(session, ids)
        else:
            by_customer = {i: await source(session, i) for i in ids}
        for customer_id, tags in found.items():
            for tag in by_customer.get(customer_id, ()):
                tag = tag.strip().lower()
                if tag and tag not in tags:
                    tags.append(tag)
    return found


program_tag_sources.append(program_tags)
program_tag_batches[program_tags] = program_tags_many
