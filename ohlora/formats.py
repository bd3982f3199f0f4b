"""Save and load a small frozen dataclass of format settings as YAML beside an adapter
(the writer's and the summarizer's formats), with one-line errors for a missing or bad file."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import yaml

from ohlora.errors import OhloraError


def save_format(obj, path: Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(asdict(obj), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load_format(cls, path: Path, what: str):
    """`cls(**fields)` from the YAML at `path`; `what` names the adapter in the errors."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise OhloraError(f"{path} is missing: a {what} adapter must carry its format") from e
    except yaml.YAMLError as e:
        raise OhloraError(f"{path} is not valid YAML: {e}") from e
    known = {f.name for f in fields(cls)}
    if not isinstance(data, dict) or set(data) - known:
        raise OhloraError(f"{path}: expected the fields {sorted(known)}")
    return cls(**data)
