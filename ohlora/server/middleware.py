"""Guard: the ASGI middleware that keeps the API browser-safe and never lets a traceback out.

- Cross-site requests: a request whose `Origin` is not the server's own (or one allowed with
  `--allow-origin`) is refused with 403, so a web page the user visits cannot write memories or
  start turns. Requests without `Origin` (curl, SDKs) are not browser requests and pass.
- A body must be JSON: POST/PUT/PATCH without `Content-Type: application/json` get 415 (an HTML
  form or a `text/plain` fetch cannot reach the API without a CORS preflight).
- DNS rebinding: while the server runs open (no keys), only loopback `Host` names are served, so a
  page on `evil.example` that re-resolves to 127.0.0.1 reaches nothing.
- Anything unexpected below becomes an OpenAI-style 500 body, one log line, and the connection
  stays usable (Starlette's own handler re-raises, which prints a traceback and resets it).
"""

from __future__ import annotations

import json
import logging
from typing import Callable
from urllib.parse import urlsplit

log = logging.getLogger("ohlora.server")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def host_name(host_header: str) -> str:
    """'localhost:8000' -> 'localhost'; '[::1]:8000' -> '::1'."""
    try:
        return (urlsplit(f"//{host_header}").hostname or "").lower()
    except ValueError:
        return ""


class Guard:
    def __init__(self, app, is_open: Callable[[], bool], allow_origins: tuple[str, ...] = ()):
        self.app = app
        self.is_open = is_open
        self.allow_origins = frozenset(o.rstrip("/").lower() for o in allow_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.refuse(scope["method"], headers)
        if refusal is not None:
            return await _send_json(send, *refusal)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # a bug, not a user mistake: one line in the log, JSON to the client
            log.error("internal error on %s %s: %s: %s", scope["method"], scope.get("path"), type(e).__name__, e)
            if not started:
                await _send_json(send, 500, error_body(f"internal error: {type(e).__name__}", "server_error"))

    def refuse(self, method: str, headers: dict[str, str]) -> tuple[int, dict] | None:
        host = headers.get("host", "")
        if self.is_open() and host_name(host) not in LOOPBACK_HOSTS:
            return 403, error_body(f"this server runs without keys and answers only on loopback names "
                                   f"(localhost, 127.0.0.1), not {host_name(host) or 'an empty Host'}",
                                   "permission_error", code="host_not_allowed")
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in self.allowed_origins(host):
            return 403, error_body(f"cross-origin request from {origin[:80]} refused: start the server with "
                                   "--allow-origin to allow it", "permission_error", code="origin_not_allowed")
        if method in BODY_METHODS:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return 415, error_body(f"send the body as JSON with 'Content-Type: application/json' "
                                       f"(got {ctype or 'none'!r})", code="unsupported_media_type")
        return None

    def allowed_origins(self, host: str) -> frozenset[str]:
        own = {f"http://{host}".lower(), f"https://{host}".lower()} if host else set()
        return self.allow_origins | own


async def _send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})
