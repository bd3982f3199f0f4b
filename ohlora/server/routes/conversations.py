"""Stored conversations: /v1/users/{user}/conversations (list, start, show with its turns, delete).

A conversation's id can be sent as "conversation" to /v1/chat/completions: its stored turns are
then the history and the new turn is appended (see routes/chat.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ohlora.server.auth import acting_user
from ohlora.server.errors import ApiError
from ohlora.server.inputs import read_json, row_id

router = APIRouter()


def conversation_id(value: str) -> int:
    rid = row_id(value)
    if rid is None:
        raise ApiError(404, f"no conversation {value[:30]}", "not_found_error")
    return rid


@router.get("/v1/users/{user}/conversations")
def list_conversations(request: Request, user: str = Depends(acting_user)):
    conversations = request.app.state.conversations
    return {"object": "list", "user": user, "data": [c.as_dict() for c in conversations.list(user)]}


@router.post("/v1/users/{user}/conversations", status_code=201)
async def start_conversation(request: Request, user: str = Depends(acting_user)):
    req = await read_json(request)
    title = req.get("title", "")
    if not isinstance(title, str):
        raise ApiError(400, "title must be a string", param="title")
    return request.app.state.conversations.start(user, title).as_dict()


@router.get("/v1/users/{user}/conversations/{cid}")
def show_conversation(cid: str, request: Request, user: str = Depends(acting_user)):
    conversations = request.app.state.conversations
    conv = conversations.get(user, conversation_id(cid))
    if conv is None:
        raise ApiError(404, f"no conversation {cid[:30]} for user {user}", "not_found_error")
    turns = [{"user": t.user, "answer": t.answer} for t in conversations.turns(user, conv.id)]
    return {**conv.as_dict(), "turns": turns}


@router.delete("/v1/users/{user}/conversations/{cid}")
def delete_conversation(cid: str, request: Request, user: str = Depends(acting_user)):
    gone = request.app.state.conversations.delete(user, conversation_id(cid))
    if gone is None:
        raise ApiError(404, f"no conversation {cid[:30]} for user {user}", "not_found_error")
    return {"deleted": True, **gone.as_dict()}
