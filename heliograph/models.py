"""Kernel tables: durable jobs and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from heliograph.db import utcnow


class Job(SQLModel, table=True):
    """One unit of durable work, written in the transaction that caused it."""

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_claim", "status", "run_at"),
        Index("ix_job_lease", "status", "locked_until"),
        # The next claim's kind (most urgent first), then that kind's oldest due jobs.
        Index("ix_job_next", "status", "priority", "run_at"),
        Index("ix_job_kind_due", "kind", "status", "run_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending, running, done, dead
    priority: int = 1  # its kind's (heliograph.jobs: URGENT 0, NORMAL 1, BULK 2)
    attempts: int = 0
    max_attempts: int = 8
    run_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None
    locked_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    # The request that caused the job (X-Request-ID), for its log lines (heliograph/logs.py).
    request_id: str | None = Field(default=None, max_length=64)


class AuditEvent(SQLModel, table=True):
    """Who did what to which record; kept even when the record's personal data is erased."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64, index=True)
    subject_type: str = Field(max_length=64)
    subject_id: int = Field(index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a request sent with an ``Idempotency-Key`` header.

    A client that retries after a lost answer gets this answer back and nothing is done
    twice. ``scope`` is who asked (e.g. ``member:7``), so two members' keys never meet;
    ``fingerprint`` is a hash of the method, path and body, so a key reused for a
    different request is refused. ``customer_id`` lets erasure find the records whose
    answers repeat a customer's conversation.
    """

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=64)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)
    status_code: int = 0  # 0 while the first request is still being handled
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    customer_id: int | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
