"""Handoff (follow the sun): shift-end, manual and escalation handoffs with a context package."""
