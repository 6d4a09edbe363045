"""Unified customer profiles, channel identities, merge and search."""
