"""Read a JSON Lines file: one object per non-blank line, a bad line named in one error."""

from __future__ import annotations

import json
from pathlib import Path

from ohlora.errors import OhloraError


def read_jsonl(path: Path) -> list:
    """Every non-blank line of `path` parsed as JSON (a BOM is ignored)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise OhloraError(f"{path} line {n}: not JSON ({e.msg})") from None
    return out
