"""Types shared by every route: ids the database can hold.

A path, query or body id outside the database's integer range would reach the driver and
fail there (a 500); bounding it here answers 422 with the reason instead. The bounds
themselves live in heliograph/bounds.py, shared with events and webhooks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from heliograph.bounds import MAX_ID, DbId

Id = Annotated[int, Path(ge=1, le=MAX_ID, description="a record id (1 .. 2147483647)")]
"""A ``{..._id}`` path parameter."""

__all__ = ["MAX_ID", "DbId", "Id"]
