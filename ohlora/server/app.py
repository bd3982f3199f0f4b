"""The FastAPI app: OpenAI-style /v1/chat/completions (streaming too), /v1/users/{user}/memories,
/v1/users (accounts), /v1/me, /health, and the single-page chat at /.

Access: with no keys at all the server is "open" (loopback only, every user visible to anyone on
the machine). Otherwise every call needs `Authorization: Bearer TOKEN`: a user's token (made by
`ohlora users add NAME`) acts for that user only; the admin key (`--api-key`) acts for anyone and
manages users. The app gets a ready ChatEngine (and its store) from outside; tests pass fakes.
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
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ohlora.chat import ChatEngine, TurnResult
from ohlora.errors import OhloraError
from ohlora.parsing import read_tag
from ohlora.server.middleware import Guard, error_body
from ohlora.server.worker import GenerationWorker, Job, QueueFull, TurnCancelled
from ohlora.store.accounts import Accounts
from ohlora.store.conversations import ConversationStore, Turn
from ohlora.store.memories import MemoryStore, validate_user

MAX_SQLITE_ID = 2**63 - 1


def check_api_key(key: str | None) -> str | None:
    """An admin key a client can send in a header: printable ASCII, no spaces."""
    if key is None:
        return None
    if not key or not all(33 <= ord(c) <= 126 for c in key):
        raise OhloraError("--api-key must be printable ASCII without spaces (an HTTP header cannot carry "
                          "other characters, so no client could ever authenticate)")
    return key


@dataclass(frozen=True)
class ServerSettings:
    api_key: str | None = None
    """The admin key: acts for any user and manages users. None: user tokens only (or open)."""
    model_name: str = "oh-lora"
    max_body_bytes: int = 64 * 1024
    default_user: str = "default"
    allow_origins: tuple[str, ...] = ()
    """Other web origins allowed to call the API from a browser (CORS opens for these only)."""
    max_queue: int = 16
    """Turns waiting beyond the one running; more get 429 with Retry-After."""

    def __post_init__(self):
        check_api_key(self.api_key)
        if self.max_queue < 1:
            raise OhloraError("max_queue must be at least 1")


@dataclass(frozen=True)
class Principal:
    role: str
    """"admin", "user" or "open" (no keys on this server)."""
    user: str | None = None

    def may_act_for(self, user: str) -> bool:
        return self.role in ("admin", "open") or self.user == user


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 headers: dict | None = None, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.headers = status, message, type_, param, headers
        self.code, self.extra = code, extra or {}


HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
              405: "invalid_request_error", 429: "rate_limit_error"}


def create_app(engine: ChatEngine, store: MemoryStore, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    worker = GenerationWorker(settings.max_queue)
    accounts = Accounts(store)
    conversations = ConversationStore(store)

    def is_open() -> bool:
        return settings.api_key is None and accounts.active_count() == 0

    @asynccontextmanager
    async def lifespan(app):
        yield
        # Shutdown (Ctrl-C): uvicorn has let running requests finish; the worker finishes the
        # answer in progress and any queued before it. Stored memories are already committed.
        await asyncio.to_thread(worker.shutdown, 120)

    app = FastAPI(title="ohlora", description="Oh-LoRA (오로라) chat and memory API", version="1", lifespan=lifespan)
    app.state.worker = worker
    app.add_middleware(Guard, is_open=is_open, allow_origins=settings.allow_origins)
    if settings.allow_origins:  # outermost: answers the preflight of the listed origins only
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.allow_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["authorization", "content-type"])

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse({**error_body(exc.message, exc.type, exc.param, exc.code), **exc.extra},
                            status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):  # 404/405 in the API's own format
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(message, HTTP_TYPES.get(exc.status_code, "invalid_request_error")),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid request')}", param=where or None),
                            status_code=400)

    def principal(request: Request) -> Principal:
        """Who sent the request (checked once per request, then kept on it)."""
        known = getattr(request.state, "principal", None)
        if known is None:
            known = request.state.principal = authenticate(request)
        return known

    def authenticate(request: Request) -> Principal:
        if is_open():
            return Principal("open")
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token and settings.api_key and hmac.compare_digest(token.encode(), settings.api_key.encode()):
            return Principal("admin")
        user = accounts.user_for(token) if token else None
        if user is None:
            raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                "(a user's token comes from `ohlora users add NAME`)", "authentication_error")
        return Principal("user", user)

    def acting_as(request: Request, user) -> str:
        """The user a request acts for, after checking the caller may."""
        who = principal(request)
        if user is None:
            user = who.user or settings.default_user
        name = user_of(user)
        if not who.may_act_for(name):
            raise ApiError(403, f"this token acts for user {who.user!r} only, not {name!r}", "permission_error",
                           param="user")
        return name

    def admin_only(request: Request) -> None:
        if principal(request).role not in ("admin", "open"):
            raise ApiError(403, "managing users needs the admin key (--api-key)", "permission_error")

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
        if not isinstance(value, str):
            raise ApiError(400, "user must be a string", param="user")
        try:
            return validate_user(value)
        except OhloraError as e:
            raise ApiError(400, str(e), param="user") from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return (files("ohlora") / "server" / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health():
        return {"status": "ok", "model": settings.model_name, "busy": worker.running, "queued": worker.waiting,
                "mode": "open" if is_open() else "tokens"}

    @app.get("/v1/me")
    def me(request: Request):
        who = principal(request)
        return {"user": who.user, "role": who.role, "mode": "open" if who.role == "open" else "tokens"}

    # -- accounts (admin) ------------------------------------------------------------------------
    @app.get("/v1/users")
    def list_users(request: Request):
        admin_only(request)
        return {"object": "list", "data": [a.as_dict() for a in accounts.list()]}

    @app.post("/v1/users", status_code=201)
    async def add_user(request: Request):
        admin_only(request)
        req = await read_json(request)
        name = user_of(req.get("name"))
        try:
            token = accounts.add(name)
        except OhloraError as e:
            raise ApiError(409, str(e), param="name") from None
        return {**accounts.get(name).as_dict(), "token": token}

    @app.delete("/v1/users/{name}")
    def revoke_user(name: str, request: Request):
        admin_only(request)
        try:
            return accounts.revoke(user_of(name)).as_dict()
        except OhloraError as e:
            raise ApiError(404, str(e), "not_found_error") from None

    @app.get("/v1/models")
    def models(request: Request):
        principal(request)
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "owned_by": "ohlora"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        principal(request)
        req = await read_json(request)
        message = last_user_message(req.get("messages"))
        user = acting_as(request, req.get("user") or None)
        stream = req.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "stream must be true or false", param="stream")
        try:
            message = engine.check_message(message)
        except OhloraError as e:
            raise ApiError(400, str(e), param="messages") from None
        temperature = number(req, "temperature", 0, 2)
        max_tokens = req.get("max_tokens", req.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or not 1 <= max_tokens <= 1024):
            raise ApiError(400, "max_tokens must be an integer in [1, 1024]", param="max_tokens")
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
                               history=history, conversation=conversation)

        try:
            job = worker.submit(run)
        except QueueFull as e:
            raise ApiError(429, f"Oh-LoRA is busy: {e}", "rate_limit_error",
                           headers={"Retry-After": str(e.retry_after)}) from None
        future = asyncio.wrap_future(job.future)
        if not stream:
            return completion_body(cid, created, settings.model_name, await until_done(request, job, future))
        return StreamingResponse(stream_events(cid, created, settings.model_name, chunks, future, job),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # -- memory API ----------------------------------------------------------------------------
    @app.get("/v1/users/{user}/memories")
    def list_memories(user: str, request: Request):
        user = acting_as(request, user)
        return {"object": "list", "user": user, "data": [i.as_dict() for i in store.list(user)]}

    @app.post("/v1/users/{user}/memories", status_code=201)
    async def add_memory(user: str, request: Request):
        user = acting_as(request, user)
        req = await read_json(request)
        text = req.get("text") or (f"[{req.get('key', '')}: {req.get('value', '')}]" if "key" in req else "")
        try:
            tag = read_tag(str(text))  # the one tag rule; its message quotes at most 60 characters of the input
        except OhloraError as e:
            raise ApiError(400, f"{e}; send {{\"key\": ..., \"value\": ...}} or {{\"text\": \"[key: value]\"}}",
                           param="text") from None
        result = store.add_tag(user, tag)
        return {**result.item.as_dict(), "status": result.status, "previous": result.previous}

    @app.delete("/v1/users/{user}/memories/{memory_id}")
    def delete_memory(user: str, memory_id: str, request: Request):
        user = acting_as(request, user)
        rid = row_id(memory_id)
        gone = store.delete(user, rid) if rid is not None else None
        if gone is None:
            raise ApiError(404, f"no memory {memory_id[:30]} for user {user}", "not_found_error")
        return {"deleted": True, **gone.as_dict()}

    # -- conversations ---------------------------------------------------------------------------
    def conversation_id(value: str) -> int:
        rid = row_id(value)
        if rid is None:
            raise ApiError(404, f"no conversation {value[:30]}", "not_found_error")
        return rid

    @app.get("/v1/users/{user}/conversations")
    def list_conversations(user: str, request: Request):
        user = acting_as(request, user)
        return {"object": "list", "user": user, "data": [c.as_dict() for c in conversations.list(user)]}

    @app.post("/v1/users/{user}/conversations", status_code=201)
    async def start_conversation(user: str, request: Request):
        user = acting_as(request, user)
        req = await read_json(request)
        title = req.get("title", "")
        if not isinstance(title, str):
            raise ApiError(400, "title must be a string", param="title")
        return conversations.start(user, title).as_dict()

    @app.get("/v1/users/{user}/conversations/{cid}")
    def show_conversation(user: str, cid: str, request: Request):
        user = acting_as(request, user)
        conv = conversations.get(user, conversation_id(cid))
        if conv is None:
            raise ApiError(404, f"no conversation {cid[:30]} for user {user}", "not_found_error")
        turns = [{"user": t.user, "answer": t.answer} for t in conversations.turns(user, conv.id)]
        return {**conv.as_dict(), "turns": turns}

    @app.delete("/v1/users/{user}/conversations/{cid}")
    def delete_conversation(user: str, cid: str, request: Request):
        user = acting_as(request, user)
        gone = conversations.delete(user, conversation_id(cid))
        if gone is None:
            raise ApiError(404, f"no conversation {cid[:30]} for user {user}", "not_found_error")
        return {"deleted": True, **gone.as_dict()}

    @app.delete("/v1/users/{user}/memories")
    def clear_memories(user: str, request: Request):
        return {"cleared": store.clear(acting_as(request, user))}

    return app


def row_id(value: str) -> int | None:
    """A path's row id, or None for anything SQLite could never have made (not digits, > 2^63-1)."""
    return int(value) if value.isascii() and value.isdigit() and int(value) <= MAX_SQLITE_ID else None


async def until_done(request: Request, job: Job, future) -> TurnResult:
    """Wait for a non-streamed turn, cancelling it if the client hangs up meanwhile."""
    while True:
        done, _ = await asyncio.wait({future}, timeout=0.25)
        if done:
            break
        if await request.is_disconnected():
            job.cancel()
            break
    try:
        return await future
    except (TurnCancelled, asyncio.CancelledError):
        raise ApiError(499, "the client closed the request; the turn was cancelled") from None


def number(req: dict, name: str, lo: float, hi: float) -> float | None:
    v = req.get(name)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise ApiError(400, f"{name} must be a number in [{lo}, {hi}]", param=name)
    return float(v)


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


def finish_reason(turn: TurnResult) -> str:
    return "length" if turn.finish_reason == "length" else "stop"


def ohlora_extra(turn: TurnResult) -> dict:
    d = turn.as_dict()
    return {"recalled": d["recalled"], "stored": d["stored"], "finish_reason": turn.finish_reason, "tries": turn.tries,
            "writer": d["writer"], "guard": d["guard"], "conversation": d["conversation"],
            "history_turns": d["history_turns"], "expression": d["expression"]}


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


async def stream_events(cid, created, model, chunks: asyncio.Queue, future, job: Job):
    """Server-sent events in OpenAI's chunk format, ending with [DONE]. If the client hangs up,
    Starlette cancels this generator: the turn is cancelled with it (dropped if still queued)."""
    try:
        async for event in _events(cid, created, model, chunks, future):
            yield event
    finally:
        if not future.done():
            job.cancel()


async def _events(cid, created, model, chunks: asyncio.Queue, future):
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
