"""Types shared by every route: ids the database can hold.

A path or query id outside the database's integer range would reach the driver and fail
there (a 500); bounding it here answers 422 with the reason instead.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

# PostgreSQL's INTEGER (the ids' type): 1 .. 2**31 - 1. SQLite holds more, but the API
# promises the same on both.
MAX_ID = 2**31 - 1

Id = Annotated[int, Path(ge=1, le=MAX_ID, description="a record id (1 .. 2147483647)")]
