"""`ohlora serve`: load the model once and serve the API and the page with uvicorn."""

from __future__ import annotations

import ipaddress
import sys

from ohlora.config import ChatConfig


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(cfg: ChatConfig, host: str, port: int, api_key: str | None) -> None:
    import uvicorn

    from ohlora.runtime import build_runtime
    from ohlora.server.app import ServerSettings, create_app

    if not is_loopback(host) and not api_key:
        print(f"warning: serving on {host} without --api-key: anyone who can reach this port can chat "
              "and read or delete every user's memories", file=sys.stderr)
    rt = build_runtime(cfg)
    app = create_app(rt.engine, rt.store, ServerSettings(api_key=api_key, model_name=rt.description))
    print(f"Oh-LoRA on http://{host}:{port}/ (API: /v1/chat/completions, /v1/users/{{user}}/memories)",
          file=sys.stderr)
    try:
        # On Ctrl-C uvicorn stops accepting, lets running requests finish, then the app's shutdown
        # hook waits for the answer in progress; every memory is committed as it is stored.
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=120)
    finally:
        rt.store.close()
