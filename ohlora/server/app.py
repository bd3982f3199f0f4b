"""The FastAPI app: OpenAI-style /v1/chat/completions (streaming too), /v1/users/{user}/memories,
/health, and the single-page chat at /.

The app gets a ready ChatEngine (and its store) from outside; tests pass one built on fakes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from ohlora.chat import ChatEngine, TurnResult
from ohlora.errors import OhloraError
from ohlora.memory.store import MemoryStore, validate_user
from ohlora.parsing import parse_tag
from ohlora.server.worker import GenerationWorker


@dataclass(frozen=True)
class ServerSettings:
    api_key: str | None = None
    model_name: str = "oh-lora"
    max_body_bytes: int = 64 * 1024
    default_user: str = "default"


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": None}}


def create_app(engine: ChatEngine, store: MemoryStore, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    worker = GenerationWorker()

    @asynccontextmanager
    async def lifespan(app):
        yield
        # Shutdown (Ctrl-C): uvicorn has let running requests finish; the worker finishes the
        # answer in progress and any queued before it. Stored memories are already committed.
        await asyncio.to_thread(worker.shutdown, 120)

    app = FastAPI(title="ohlora", description="Oh-LoRA (오로라) chat and memory API", version="1", lifespan=lifespan)
    app.state.worker = worker

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse(error_body(exc.message, exc.type, exc.param), status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):  # never a bare 500 page
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error"), status_code=500)

    def check_auth(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", "authentication_error")

    async def read_json(request: Request) -> dict:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > settings.max_body_bytes:
            raise ApiError(413, f"request body over {settings.max_body_bytes} bytes")
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            raise ApiError(413, f"request body over {settings.max_body_bytes} bytes")
        try:
            data = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        return data

    def user_of(value) -> str:
        try:
            return validate_user(str(value))
        except OhloraError as e:
            raise ApiError(400, str(e), param="user") from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return (files("ohlora") / "server" / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": settings.model_name, "busy": worker.running, "queued": worker.waiting}

    @app.get("/v1/models")
    def models(request: Request):
        check_auth(request)
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "owned_by": "ohlora"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_auth(request)
        req = await read_json(request)
        message = last_user_message(req.get("messages"))
        user = user_of(req.get("user") or settings.default_user)
        try:
            message = engine.check_message(message)
        except OhloraError as e:
            raise ApiError(400, str(e), param="messages") from None
        temperature = number(req, "temperature", 0, 2)
        max_tokens = req.get("max_tokens", req.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or not 1 <= max_tokens <= 1024):
            raise ApiError(400, "max_tokens must be an integer in [1, 1024]", param="max_tokens")
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue = asyncio.Queue()

        def on_text(t: str) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, t)

        job = lambda: engine.turn(user, message, on_text=on_text if req.get("stream") else None,  # noqa: E731
                                  temperature=temperature, max_new_tokens=max_tokens)
        future = asyncio.wrap_future(worker.submit(job))
        if not req.get("stream"):
            turn = await future
            return completion_body(cid, created, settings.model_name, turn)
        return StreamingResponse(stream_events(cid, created, settings.model_name, chunks, future),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- memory API ----------------------------------------------------------------------------
    @app.get("/v1/users/{user}/memories")
    def list_memories(user: str, request: Request):
        check_auth(request)
        return {"object": "list", "user": user_of(user), "data": [i.as_dict() for i in store.list(user_of(user))]}

    @app.post("/v1/users/{user}/memories", status_code=201)
    async def add_memory(user: str, request: Request):
        check_auth(request)
        user = user_of(user)
        req = await read_json(request)
        text = req.get("text") or (f"[{req.get('key', '')}: {req.get('value', '')}]" if "key" in req else "")
        tag = parse_tag(str(text))
        if tag is None:
            raise ApiError(400, "send {\"key\": ..., \"value\": ...} or {\"text\": \"[key: value]\"} "
                                "with a non-empty key and value", param="text")
        result = store.add_tag(user, tag)
        return {**result.item.as_dict(), "status": result.status, "previous": result.previous}

    @app.delete("/v1/users/{user}/memories/{memory_id}")
    def delete_memory(user: str, memory_id: int, request: Request):
        check_auth(request)
        gone = store.delete(user_of(user), int(memory_id))
        if gone is None:
            raise ApiError(404, f"no memory {memory_id} for user {user}", "not_found_error")
        return {"deleted": True, **gone.as_dict()}

    @app.delete("/v1/users/{user}/memories")
    def clear_memories(user: str, request: Request):
        check_auth(request)
        return {"cleared": store.clear(user_of(user))}

    return app


def number(req: dict, name: str, lo: float, hi: float) -> float | None:
    v = req.get(name)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise ApiError(400, f"{name} must be a number in [{lo}, {hi}]", param=name)
    return float(v)


def last_user_message(messages) -> str:
    """Oh-LoRA answers the latest user message; earlier turns live in her memory, not the prompt."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise ApiError(400, "the last message must have role 'user'", param="messages")
    content = last.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise ApiError(400, "message content must be text", param="messages")
    return content


def finish_reason(turn: TurnResult) -> str:
    return "length" if turn.finish_reason == "length" else "stop"


def ohlora_extra(turn: TurnResult) -> dict:
    d = turn.as_dict()
    return {"recalled": d["recalled"], "stored": d["stored"], "finish_reason": turn.finish_reason, "tries": turn.tries,
            "writer": d["writer"]}


def completion_body(cid: str, created: int, model: str, turn: TurnResult) -> dict:
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.answer},
                     "finish_reason": finish_reason(turn)}],
        "usage": {"prompt_tokens": 0, "completion_tokens": turn.n_tokens, "total_tokens": turn.n_tokens},
        "ohlora": ohlora_extra(turn),
    }


def _chunk(cid, created, model, delta: dict, finish=None, extra=None) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if extra is not None:
        body["ohlora"] = extra
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def stream_events(cid, created, model, chunks: asyncio.Queue, future):
    """Server-sent events in OpenAI's chunk format, ending with [DONE]."""
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    while True:
        getter = asyncio.ensure_future(chunks.get())
        done, _ = await asyncio.wait({getter, future}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            yield _chunk(cid, created, model, {"content": getter.result()})
            continue
        getter.cancel()
        break
    while not chunks.empty():  # text queued just before the turn ended
        yield _chunk(cid, created, model, {"content": chunks.get_nowait()})
    try:
        turn = future.result()
    except Exception as e:  # the stream has started: report in-band, OpenAI style
        yield f"data: {json.dumps(error_body(str(e), 'server_error'), ensure_ascii=False)}\n\n"
    else:
        yield _chunk(cid, created, model, {}, finish_reason(turn), ohlora_extra(turn))
    yield "data: [DONE]\n\n"
