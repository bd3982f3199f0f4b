"""What routes read from a request besides auth: the JSON object body (size-capped) and path row ids."""

from __future__ import annotations

import json

from fastapi import Request

from ohlora.server.errors import ApiError

MAX_SQLITE_ID = 2**63 - 1


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
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def row_id(value: str) -> int | None:
    """A path's row id, or None for anything SQLite could never have made (not digits, > 2^63-1)."""
    return int(value) if value.isascii() and value.isdigit() and int(value) <= MAX_SQLITE_ID else None
