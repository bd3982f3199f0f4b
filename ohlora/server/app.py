"""create_app: the FastAPI app of `ohlora serve`, and its ServerSettings.

The app gets a ready ChatEngine (and its store) from outside; tests pass fakes. It keeps the
shared objects on `app.state` (engine, store, settings, worker, accounts, conversations),
includes the routers of ohlora.server.routes, installs the error handlers (errors.py) and the
Guard and CORS middleware. Who may call what is auth.py's.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ohlora.chat import ChatEngine
from ohlora.errors import OhloraError
from ohlora.server.auth import check_api_key, is_open
from ohlora.server.errors import install_error_handlers
from ohlora.server.middleware import Guard
from ohlora.server.routes import chat, conversations, memory, pages, users
from ohlora.server.worker import GenerationWorker
from ohlora.store.accounts import Accounts
from ohlora.store.conversations import ConversationStore
from ohlora.store.memories import MemoryStore

__all__ = ["ServerSettings", "check_api_key", "create_app"]

ROUTERS = (pages.router, users.router, chat.router, memory.router, conversations.router)


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
    docs: bool = False
    """Serve FastAPI's /docs, /redoc and /openapi.json (to anyone, no token: `ohlora serve --docs`).
    Off by default: a server with keys shows nothing of itself without one."""

    def __post_init__(self):
        check_api_key(self.api_key)
        if self.max_queue < 1:
            raise OhloraError("max_queue must be at least 1")


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    # Shutdown (Ctrl-C): uvicorn has let running requests finish; the worker finishes the
    # answer in progress and any queued before it. Stored memories are already committed.
    await asyncio.to_thread(app.state.worker.shutdown, 120)


def create_app(engine: ChatEngine, store: MemoryStore, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    docs = settings.docs
    app = FastAPI(title="ohlora", description="Oh-LoRA (오로라) chat and memory API", version="1", lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    state = app.state
    state.engine, state.store, state.settings = engine, store, settings
    state.worker = GenerationWorker(settings.max_queue)
    state.accounts, state.conversations = Accounts(store), ConversationStore(store)
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(Guard, is_open=lambda: is_open(settings.api_key, state.accounts),
                       allow_origins=settings.allow_origins)
    if settings.allow_origins:  # outermost: answers the preflight of the listed origins only
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.allow_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["authorization", "content-type"])
    return app
