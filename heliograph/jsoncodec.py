"""How JSON columns are written and read: orjson, for every engine (SQLite, PostgreSQL,
the SQLite writer) and for ``heliograph.bulk``'s writes, so all of them store the same text.

orjson encodes a batch's JSON columns several times faster than the standard library
(on bench/events.py, 1,000 score rows carry 5,000 small documents a batch). The text is
standard JSON without spaces; keys that are not strings (ints, say) become strings, as
``json.dumps`` makes them. Unlike ``json.dumps`` it writes NaN and infinity as null.
"""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


loads = orjson.loads

# For create_engine / create_async_engine.
ENGINE_OPTIONS: dict[str, Any] = {"json_serializer": dumps, "json_deserializer": loads}
