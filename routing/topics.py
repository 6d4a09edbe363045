"""Topic tags for a conversation: keyword rules on inbound text, and the customer's programs.

Rules come from ``HELIOGRAPH_ROUTING_TOPIC_KEYWORDS`` (JSON ``{"tag": ["word", ...]}``).
A keyword matches whole words, case-insensitively; ``"refund*"`` also matches words that
start with it (refunded, refunds); a keyword of several words matches that phrase.

Programs: ``program_tag_sources`` holds ``async def tags(session, customer_ids) ->
{customer_id: [tag, ...]}`` functions, each answering for a batch of messages' customers
at once (one query); the CRM's (the categories and codes of the customer's active
enrollments) is registered below, so a student of a "body" program reaches someone who
knows "body".
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache

from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.programs import program_tags

ProgramTagSource = Callable[[AsyncSession, list[int]], Awaitable[dict[int, list[str]]]]
program_tag_sources: list[ProgramTagSource] = []


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


async def tags_for_programs(
    session: AsyncSession, customer_ids: Iterable[int]
) -> dict[int, list[str]]:
    """Tags from the programs each customer is enrolled in (every registered source,
    one call each for all of them), lower-cased, each once."""
    ids = list(dict.fromkeys(customer_ids))
    found: dict[int, list[str]] = {i: [] for i in ids}
    for source in program_tag_sources:
        by_customer = await source(session, ids)
        for customer_id, tags in found.items():
            for tag in by_customer.get(customer_id, ()):
                tag = tag.strip().lower()
                if tag and tag not in tags:
                    tags.append(tag)
    return found


program_tag_sources.append(program_tags)
