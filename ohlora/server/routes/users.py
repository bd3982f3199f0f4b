"""/v1/me (who the caller is) and the accounts API /v1/users (admin key only): list, add, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ohlora.errors import OhloraError
from ohlora.server.auth import Principal, admin_only, principal, user_of
from ohlora.server.errors import ApiError
from ohlora.server.inputs import read_json
from ohlora.store.database import StoreError

router = APIRouter()


@router.get("/v1/me")
def me(who: Principal = Depends(principal)):
    return {"user": who.user, "role": who.role, "mode": "open" if who.role == "open" else "tokens"}


@router.get("/v1/users", dependencies=[Depends(admin_only)])
def list_users(request: Request):
    return {"object": "list", "data": [a.as_dict() for a in request.app.state.accounts.list()]}


@router.post("/v1/users", status_code=201, dependencies=[Depends(admin_only)])
async def add_user(request: Request):
    accounts = request.app.state.accounts
    req = await read_json(request)
    name = user_of(req.get("name"))
    try:
        token = accounts.add(name)
    except StoreError:
        raise  # the database's failure (a 500), not a name already taken
    except OhloraError as e:
        raise ApiError(409, str(e), param="name") from None
    return {**accounts.get(name).as_dict(), "token": token}


@router.delete("/v1/users/{name}", dependencies=[Depends(admin_only)])
def revoke_user(name: str, request: Request):
    try:
        return request.app.state.accounts.revoke(user_of(name)).as_dict()
    except StoreError:
        raise
    except OhloraError as e:
        raise ApiError(404, str(e), "not_found_error") from None
