"""`ohlora serve`: check the settings, load the model once and serve the API and the page with uvicorn.

Everything a user can get wrong (a key no client could send, an open server on a public address,
a port in use) is checked before the model loads, and reported as one line.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from dataclasses import replace

from ohlora.config import ChatConfig
from ohlora.errors import OhloraError
from ohlora.runtime import build_runtime, open_store
from ohlora.store.accounts import Accounts


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_open_server(host: str, api_key: str | None, active_users: int) -> None:
    """Without any key the server is open to whoever can reach it: loopback only."""
    if api_key is None and active_users == 0 and not is_loopback(host):
        raise OhloraError(f"refusing to serve on {host} without keys: anyone on the network could read and "
                          "delete every user's memories. Add users (`ohlora users add NAME`) or an admin key "
                          "(--api-key), or bind to 127.0.0.1")


def check_port_free(host: str, port: int) -> None:
    """Bind the port once, the way uvicorn will, so a port in use is one clear line up front."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OhloraError(f"port {port} on {host} is already in use: stop the other server or pass "
                                  "--port") from None
            raise OhloraError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def serve(cfg: ChatConfig, host: str, port: int, api_key: str | None, allow_origins: tuple[str, ...] = (),
          max_queue: int = 16, docs: bool = False) -> None:
    # lazy: fastapi, starlette, uvicorn load only when this runs
    import uvicorn

    from ohlora.server.app import ServerSettings, check_api_key, create_app

    check_api_key(api_key)
    store = open_store()
    try:
        active = Accounts(store).active_count()
    finally:
        store.close()
    check_open_server(host, api_key, active)
    check_port_free(host, port)
    settings = ServerSettings(api_key=api_key, allow_origins=tuple(allow_origins), max_queue=max_queue,
                              docs=docs)  # checked now
    rt = build_runtime(cfg)
    app = create_app(rt.engine, rt.store, replace(settings, model_name=rt.description))
    access = (f"{active} user token(s)" + (" + admin key" if api_key else "")) if active or api_key else \
        "open (no keys): loopback only, every user's memories visible to anyone on this machine"
    print(f"Oh-LoRA on http://{host}:{port}/ (API: /v1/chat/completions, /v1/users/{{user}}/memories); "
          f"access: {access}", file=sys.stderr)
    try:
        # On Ctrl-C uvicorn stops accepting, lets running requests finish, then the app's shutdown
        # hook waits for the answer in progress; every memory is committed as it is stored.
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=120)
    finally:
        rt.store.close()
