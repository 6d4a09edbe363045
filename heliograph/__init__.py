"""Heliograph kernel: settings, database, durable jobs, scheduler and CLI."""

__version__ = "0.1.0"
