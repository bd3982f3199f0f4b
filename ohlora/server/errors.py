"""ApiError and the exception handlers that give every error the OpenAI-style body.

Routes raise ApiError(status, message, ...); the handlers installed by `install_error_handlers`
turn it, Starlette's own 404/405 and FastAPI's request-validation errors into
`{"error": {"message", "type", "param", "code"}}` (see `middleware.error_body`). A memory
database that cannot do what was asked (damaged, read-only, busy: `store.database.StoreError`)
is a 500 with its one-line message and one log line, never a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ohlora.server.middleware import error_body
from ohlora.store.database import StoreError

log = logging.getLogger("ohlora.server")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 headers: dict | None = None, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = status, message, type_, param, headers
        self.code, self.extra = code, extra or {}


HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
              405: "invalid_request_error", 429: "rate_limit_error"}


async def _api_error(request: Request, exc: ApiError):
    return JSONResponse({**error_body(exc.message, exc.type, exc.param, exc.code), **exc.extra},
                        status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException):  # 404/405 in the API's own format
    message = {404: f"no route {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return JSONResponse(error_body(message, HTTP_TYPES.get(exc.status_code, "invalid_request_error")),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid request')}", param=where or None),
                        status_code=400)


async def _store_error(request: Request, exc: StoreError):
    log.error("memory database on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(error_body(str(exc), "server_error", code=exc.code), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
