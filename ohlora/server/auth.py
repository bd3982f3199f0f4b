"""Who a request comes from and whom it may act for, as FastAPI dependencies shared by the routers.

Access: with no keys at all the server is "open" (loopback only, every user visible to anyone on
the machine). Otherwise every call needs `Authorization: Bearer TOKEN`: a user's token (made by
`ohlora users add NAME`) acts for that user only; the admin key (`--api-key`) acts for anyone and
manages users.

- `principal`: the caller (a Principal), or 401. FastAPI resolves it once per request, however
  many dependencies of the route ask for it.
- `acting_user`: the `{user}` of a path, parsed and authorized once (400 / 403); routes get the
  clean id. `acting_as` is the same check for a user named in a body (chat completions).
- `admin_only`: 403 unless the caller holds the admin key (or the server is open).

The app keeps `settings` and `accounts` on `app.state`; these read them from there.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Depends, Request

from ohlora.errors import OhloraError
from ohlora.server.errors import ApiError
from ohlora.store.accounts import Accounts
from ohlora.store.memories import validate_user


def check_api_key(key: str | None) -> str | None:
    """An admin key a client can send in a header: printable ASCII, no spaces."""
    if key is None:
        return None
    if not key or not all(33 <= ord(c) <= 126 for c in key):
        raise OhloraError("--api-key must be printable ASCII without spaces (an HTTP header cannot carry "
                          "other characters, so no client could ever authenticate)")
    return key


@dataclass(frozen=True)
class Principal:
    role: str
    """"admin", "user" or "open" (no keys on this server)."""
    user: str | None = None

    def may_act_for(self, user: str) -> bool:
        return self.role in ("admin", "open") or self.user == user


def is_open(api_key: str | None, accounts: Accounts) -> bool:
    """No admin key and no active user token: anyone who reaches the (loopback) server may act."""
    return api_key is None and accounts.active_count() == 0


def principal(request: Request) -> Principal:
    """Who sent the request: open, the admin key, or a user's token; 401 otherwise."""
    state = request.app.state
    api_key, accounts = state.settings.api_key, state.accounts
    if is_open(api_key, accounts):
        return Principal("open")
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token and api_key and hmac.compare_digest(token.encode(), api_key.encode()):
        return Principal("admin")
    user = accounts.user_for(token) if token else None
    if user is None:
        raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                            "(a user's token comes from `ohlora users add NAME`)", "authentication_error")
    return Principal("user", user)


def user_of(value) -> str:
    """A user id as sent by a client, checked and stripped (400 if it is not one)."""
    if not isinstance(value, str):
        raise ApiError(400, "user must be a string", param="user")
    try:
        return validate_user(value)
    except OhloraError as e:
        raise ApiError(400, str(e), param="user") from None


def acting_as(who: Principal, user, default_user: str) -> str:
    """The user a request acts for (None: the caller's own, else `default_user`), after checking
    the caller may."""
    if user is None:
        user = who.user or default_user
    name = user_of(user)
    if not who.may_act_for(name):
        raise ApiError(403, f"this token acts for user {who.user!r} only, not {name!r}", "permission_error",
                       param="user")
    return name


def acting_user(user: str, request: Request, who: Principal = Depends(principal)) -> str:
    """The path's `{user}`, parsed and authorized: the id every /v1/users/{user}/... route works on."""
    return acting_as(who, user, request.app.state.settings.default_user)


def admin_only(who: Principal = Depends(principal)) -> Principal:
    if who.role not in ("admin", "open"):
        raise ApiError(403, "managing users needs the admin key (--api-key)", "permission_error")
    return who
