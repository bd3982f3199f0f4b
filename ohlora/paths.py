"""The one home directory for models, adapters and databases (OHLORA_HOME overrides it), the
files shipped in the package, and the directory a "default|none|DIR" setting names."""

from __future__ import annotations

import functools
import os
import sys
import time
from importlib.resources import files
from pathlib import Path

from ohlora.errors import OhloraError


def home_dir(create: bool = True) -> Path:
    """Return the ohlora home: $OHLORA_HOME, else the platform's user data dir + /ohlora."""
    env = os.environ.get("OHLORA_HOME")
    if env:
        home = Path(env).expanduser()
        if not home.is_absolute():
            # relative to wherever the command happens to run: pin it, and say so
            home = Path(os.path.abspath(home))
            _note_relative_home(env, str(home))
    elif sys.platform == "win32":
        home = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "ohlora"
    elif sys.platform == "darwin":
        home = Path.home() / "Library" / "Application Support" / "ohlora"
    else:
        home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "ohlora"
    if create:
        ensure_dir(home)
    return home


@functools.cache
def _note_relative_home(env: str, resolved: str) -> None:
    """Once per process and value: every path derives from home_dir(), so it is called often."""
    print(f"note: OHLORA_HOME={env} is relative; using {resolved}", file=sys.stderr)


def ensure_dir(path: Path) -> Path:
    """mkdir -p, turning OS errors into one clear line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise OhloraError(f"{path} exists but is not a directory") from e
    except OSError as e:
        raise OhloraError(f"cannot create directory {path}: {e.strerror}") from e
    if not path.is_dir():
        raise OhloraError(f"{path} exists but is not a directory")
    return path


def models_dir() -> Path:
    return ensure_dir(home_dir() / "models")


def adapters_dir() -> Path:
    return ensure_dir(home_dir() / "adapters")


def memory_db_path() -> Path:
    return home_dir() / "memory.sqlite3"


def move_aside(path: Path) -> Path:
    """Rename `path` to `<name>.old-<timestamp>` beside it: a finished run is never deleted."""
    backup = path.with_name(path.name + f".old-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(backup)
    return backup


def bundled(*parts: str) -> str:
    """A file shipped in the package (datasets, persona card, adapters): assets/<parts>."""
    return str(files("ohlora").joinpath("assets", *parts))


def resolve_named(which: str | None, shipped: Path | None, what: str) -> Path | None:
    """The directory a "default|none|DIR" setting names: "default" -> `shipped` (None when nothing
    is shipped), "none" (any case) or None -> None, else the directory DIR, which must exist
    ("<what> directory DIR not found"). Other special names are the caller's to handle first."""
    if which is None or which.lower() == "none":
        return None
    if which == "default":
        return shipped
    path = Path(which).expanduser()
    if not path.is_dir():
        raise OhloraError(f"{what} directory {path} not found")
    return path


def shipped_head(kind: str, base: str, policy_file: str) -> Path | None:
    """A classifier head shipped in the package (assets/<kind>/<base>: the guard, the key-intent
    head, the expression head), or None when it is not shipped (no `policy_file` there)."""
    path = Path(bundled(kind, base))
    return path if (path / policy_file).is_file() else None


def resolve_head(which: str | None, shipped: Path | None, what: str, policy_file: str, trainer: str) -> Path | None:
    """A "default|none|DIR" head setting: "default" -> `shipped` (None when not shipped), "none" ->
    None, else DIR, which must hold `policy_file` ("<what> directory DIR has no ... (see `trainer`)")."""
    path = resolve_named(which, shipped, what)
    if path is not None and which != "default" and not (path / policy_file).is_file():
        raise OhloraError(f"{what} directory {path} has no {policy_file} (see `{trainer}`)")
    return path
