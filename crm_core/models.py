"""Customer, Identity (channel + external id, unique) and ContactPoint (email/phone, unique)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow

JOURNEY_STAGES = (
    "discovery",
    "exploration",
    "commitment",
    "engagement",
    "integration",
    "transformation",
    "advocacy",
)


class Customer(SQLModel, table=True):
    __tablename__ = "customer"

    id: int | None = Field(default=None, primary_key=True)
    display_name: str = Field(default="", max_length=200)
    # Lower-cased name, indexed, for prefix search with a plain b-tree range scan.
    search_name: str = Field(default="", max_length=200, index=True)
    language: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=2)
    journey_stage: str = Field(default="discovery", max_length=32)
    lifetime_value: Decimal = Field(default=Decimal("0"), sa_column=Column(Numeric(12, 2)))
    vip: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    merged_into_id: int | None = Field(default=None, foreign_key="customer.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime | None = None


class Identity(SQLModel, table=True):
    """How a customer is known on one channel (Chatwoot's ContactInbox ``source_id``)."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("channel", "external_id", name="uq_identity_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    channel: str = Field(max_length=32)
    external_id: str = Field(max_length=255)
    display_name: str | None = Field(default=None, max_length=200)
    # Consent and reachability are per identity: STOP on SMS says nothing about email.
    opted_out: bool = False
    unreachable_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime | None = None


class ContactPoint(SQLModel, table=True):
    """An email address or phone number on a profile; unique, so a second channel finds it."""

    __tablename__ = "contact_point"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_contact_point"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    kind: str = Field(max_length=8)  # email, phone
    value: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
