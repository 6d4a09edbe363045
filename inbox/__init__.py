"""Conversations, messages, notes; the ingest pipeline; replies and the outbound outbox."""
