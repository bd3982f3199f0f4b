"""The OpenAI-compatible chat: GET /v1/models and POST /v1/chat/completions (streamed or not).

The request is read here (the user's last message, the client-held history or ohlora's stored
"conversation", per-request temperature / max_tokens); the turn runs on the app's
GenerationWorker (one at a time, 429 with Retry-After when its queue is full) and the answer is
written by ohlora.server.responses, which also commits what the turn stores once the client has
had the whole answer (a client that hangs up before has nothing stored; README "Serving").

Per-request overrides: the server checks only their types (a number, an integer); their ranges
are ChatConfig's own, checked by building the engine's config with them, so the API and the
config file accept the same values.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ohlora.chat import TurnResult
from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.parsing import check_message
from ohlora.server.auth import Principal, acting_as, principal
from ohlora.server.errors import ApiError
from ohlora.server.inputs import read_json
from ohlora.server.responses import completion_body, stream_events, until_done
from ohlora.server.worker import Job, QueueFull
from ohlora.store.conversations import Turn

router = APIRouter()


@router.get("/v1/models", dependencies=[Depends(principal)])
def models(request: Request):
    name = request.app.state.settings.model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "ohlora"}]}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, who: Principal = Depends(principal)):
    state = request.app.state
    engine, settings, conversations, worker = state.engine, state.settings, state.conversations, state.worker
    req = await read_json(request)
    message = last_user_message(req.get("messages"))
    user = acting_as(who, req.get("user") or None, settings.default_user)
    stream = req.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", param="stream")
    try:
        message = check_message(message, engine.config.max_message_chars)  # a Message: the turn does not check again
    except OhloraError as e:
        raise ApiError(400, str(e), param="messages") from None
    temperature, max_tokens = overrides(engine.config, req)
    # ohlora's extension: "conversation": an id from POST /v1/users/{user}/conversations; the
    # stored turns are then the history and this turn is appended. Otherwise the history is
    # the `messages` the client sent (the client owns it, as with OpenAI's API).
    conversation, history = req.get("conversation"), None
    if conversation is not None:
        if not isinstance(conversation, int) or isinstance(conversation, bool) or \
                conversations.get(user, conversation) is None:
            raise ApiError(404, f"no conversation {str(conversation)[:30]} for user {user}", "not_found_error",
                           param="conversation")
    else:
        history = history_of(req["messages"])
    held = engine.blocked(user)
    if held is not None:  # blocked by the ethics guard: refused before it is even queued
        raise ApiError(403, held.reply, "permission_error", code="blocked",
                       headers={"Retry-After": str(held.retry_after)}, extra={"retry_after": held.retry_after})
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue = asyncio.Queue()

    def run(job: Job) -> TurnResult:
        def on_text(t: str) -> None:
            job.check()  # the client has gone: stop here, before anything is stored
            if stream:
                loop.call_soon_threadsafe(chunks.put_nowait, t)
        job.check()
        return engine.turn(user, message, on_text=on_text, temperature=temperature, max_new_tokens=max_tokens,
                           history=history, conversation=conversation, commit=False)  # responses.py commits

    try:
        job = worker.submit(run)
    except QueueFull as e:
        raise ApiError(429, f"Oh-LoRA is busy: {e}", "rate_limit_error",
                       headers={"Retry-After": str(e.retry_after)}) from None
    future = asyncio.wrap_future(job.future)
    if not stream:
        return completion_body(cid, created, settings.model_name, await until_done(request, job, future, engine.commit))
    return StreamingResponse(stream_events(cid, created, settings.model_name, chunks, future, job, engine.commit),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def overrides(config: ChatConfig, req: dict) -> tuple[float | None, int | None]:
    """The request's temperature and max_tokens (or max_completion_tokens), None where not sent.
    Types are checked here; the ranges are ChatConfig's (its OhloraError becomes a 400)."""
    temperature = req.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            raise ApiError(400, "temperature must be a number", param="temperature")
        temperature = float(temperature)
        _in_config(config, "temperature", temperature=temperature)
    max_tokens = req.get("max_tokens", req.get("max_completion_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise ApiError(400, "max_tokens must be an integer", param="max_tokens")
        _in_config(config, "max_tokens", max_new_tokens=max_tokens)
    return temperature, max_tokens


def _in_config(config: ChatConfig, param: str, **override) -> None:
    try:
        replace(config, **override)
    except OhloraError as e:
        raise ApiError(400, str(e), param=param) from None


def message_text(message, where: str = "messages") -> str:
    if not isinstance(message, dict):
        raise ApiError(400, "each message must be an object with role and content", param=where)
    content = message.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if content is None and message.get("role") == "assistant":
        content = ""  # an assistant turn that only called tools
    if not isinstance(content, str):
        raise ApiError(400, "message content must be text", param=where)
    return content


def last_user_message(messages) -> str:
    """The message Oh-LoRA answers: the last one, which must be the user's."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise ApiError(400, "the last message must have role 'user'", param="messages")
    return message_text(last)


def history_of(messages: list) -> list[Turn]:
    """The earlier turns of `messages` (the client owns the history, as with OpenAI's API): each
    user message with the assistant answer that followed it; system messages are ignored (the
    persona lives in the prompt format)."""
    turns: list[Turn] = []
    pending: list[str] = []
    for m in messages[:-1]:
        role = m.get("role") if isinstance(m, dict) else None
        if role == "user":
            pending.append(message_text(m))
        elif role == "assistant":
            turns.append(Turn(" ".join(pending), message_text(m)))
            pending = []
        elif role not in ("system", "developer", "tool"):
            raise ApiError(400, f"unknown message role {str(role)[:20]!r}", param="messages")
    if pending:
        turns.append(Turn(" ".join(pending), ""))
    return turns
