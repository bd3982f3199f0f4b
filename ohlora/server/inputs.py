"""What routes read from a request besides auth: the JSON object body (size-capped) and path row ids.

A body that is valid JSON but that nothing behind the routes could take is a 400 naming the field,
here, before any route sees it: text with a lone surrogate (`"\\ud800"`: not Unicode, SQLite and
the response encoder refuse it), an integer outside SQLite's 64 bits, NaN or Infinity (Python's
json module reads them, but they are not JSON and every range check passes a NaN), nesting too
deep to parse.
"""

from __future__ import annotations

import json
import math
import re

from fastapi import Request

from ohlora.server.errors import ApiError

MAX_SQLITE_ID = 2**63 - 1
MIN_SQLITE_INT = -(2**63)
SURROGATE = re.compile("[\ud800-\udfff]")
MAX_PARAM_CHARS = 80


async def read_json(request: Request) -> dict:
    """The body as a JSON object: 413 over `settings.max_body_bytes`, 400 if not a JSON object."""
    limit = request.app.state.settings.max_body_bytes
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > limit:
        raise ApiError(413, f"request body over {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise ApiError(413, f"request body over {limit} bytes")
    try:
        data = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    problem = unusable(data)
    if problem is not None:
        where, why = problem
        raise ApiError(400, f"{where} {why}", param=where)
    return data


def unusable(data) -> tuple[str, str] | None:
    """(field, why) for the first value in `data` (in document order) that the server cannot take,
    or None. The field is a path such as `messages[0].content` (never quoting the bad text)."""
    stack = [("body", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if SURROGATE.search(value):
                return where, "is not valid Unicode text (a lone surrogate such as \\ud800)"
        elif isinstance(value, int) and not isinstance(value, bool):
            if not MIN_SQLITE_INT <= value <= MAX_SQLITE_ID:
                return where, "is an integer out of range (at most 2^63-1)"
        elif isinstance(value, float) and not math.isfinite(value):
            return where, "is not a finite number (NaN and Infinity are not JSON)"
        elif isinstance(value, dict):
            for k in value:
                if SURROGATE.search(k):
                    return where, "has a field name that is not valid Unicode text (a lone surrogate)"
            stack.extend(reversed([(_field(where, k), v) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{where}[{i}]", v) for i, v in enumerate(value)]))
    return None


def _field(where: str, key: str) -> str:
    path = key if where == "body" else f"{where}.{key}"
    return path if len(path) <= MAX_PARAM_CHARS else path[:MAX_PARAM_CHARS - 3] + "..."


def row_id(value: str) -> int | None:
    """A path's row id, or None for anything SQLite could never have made (not digits, > 2^63-1)."""
    return int(value) if value.isascii() and value.isdigit() and int(value) <= MAX_SQLITE_ID else None
