"""The memory API: /v1/users/{user}/memories (list, add, delete one, clear), on the acting user."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ohlora.errors import OhloraError
from ohlora.parsing import read_tag
from ohlora.server.auth import acting_user
from ohlora.server.errors import ApiError
from ohlora.server.inputs import read_json, row_id

router = APIRouter()


@router.get("/v1/users/{user}/memories")
def list_memories(request: Request, user: str = Depends(acting_user)):
    return {"object": "list", "user": user, "data": [i.as_dict() for i in request.app.state.store.list(user)]}


@router.post("/v1/users/{user}/memories", status_code=201)
async def add_memory(request: Request, user: str = Depends(acting_user)):
    req = await read_json(request)
    text = req.get("text") or (f"[{req.get('key', '')}: {req.get('value', '')}]" if "key" in req else "")
    try:
        tag = read_tag(str(text))  # the one tag rule; its message quotes at most 60 characters of the input
    except OhloraError as e:
        raise ApiError(400, f"{e}; send {{\"key\": ..., \"value\": ...}} or {{\"text\": \"[key: value]\"}}",
                       param="text") from None
    result = request.app.state.store.add_tag(user, tag)
    return result.as_dict()  # status: added, added beside (kept: the other values), replaced (previous), unchanged


@router.delete("/v1/users/{user}/memories/{memory_id}")
def delete_memory(memory_id: str, request: Request, user: str = Depends(acting_user)):
    rid = row_id(memory_id)
    gone = request.app.state.store.delete(user, rid) if rid is not None else None
    if gone is None:
        raise ApiError(404, f"no memory {memory_id[:30]} for user {user}", "not_found_error")
    return {"deleted": True, **gone.as_dict()}


@router.delete("/v1/users/{user}/memories")
def clear_memories(request: Request, user: str = Depends(acting_user)):
    return {"cleared": request.app.state.store.clear(user)}
