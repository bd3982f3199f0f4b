"""The public routes, no token needed: the single-page chat at / and /health."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ohlora.server.auth import is_open

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page():
    return (files("ohlora") / "server" / "static" / "index.html").read_text(encoding="utf-8")


@router.get("/health")
def health(request: Request):
    state = request.app.state
    return {"status": "ok", "model": state.settings.model_name, "busy": state.worker.running,
            "queued": state.worker.waiting, "mode": "open" if is_open(state.settings.api_key, state.accounts) else "tokens"}
