"""TranslationCache: one provider's translation of one text, so it is paid for once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow


class TranslationCache(SQLModel, table=True):
    __tablename__ = "translation_cache"
    __table_args__ = (
        UniqueConstraint(
            "provider", "source", "target", "text_hash", name="uq_translation_cache_key"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    source: str = Field(max_length=16)
    target: str = Field(max_length=16)
    text_hash: str = Field(max_length=64)  # SHA-256 of the source text, hex
    translated: str = Field(sa_column=Column(Text, nullable=False))
    hits: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime = Field(default_factory=utcnow)
