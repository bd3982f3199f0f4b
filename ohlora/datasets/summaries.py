"""The summarizer's data: rows of (summary so far, turns to fold) -> new summary, from JSONL.

One line per row, as in `ohlora/assets/data/summaries/{train,test}.jsonl`:

    {"id": "s0001", "source": "d0001", "previous": "", "turns": [{"user": ..., "answer": ...}],
     "summary": "...", "must_include": ["콩이"]}

`must_include`: the facts (substrings of the reference summary) a summary must not lose.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.store.conversations import Turn


@dataclass(frozen=True)
class SummaryRow:
    id: str
    source: str
    previous: str
    turns: tuple[Turn, ...]
    summary: str
    must_include: tuple[str, ...] = ()


def read_summary_rows(path: Path) -> list[SummaryRow]:
    path = Path(path)
    if not path.is_file():
        raise OhloraError(f"summary data {path} not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            turns = tuple(Turn(str(t["user"]), str(t["answer"])) for t in d["turns"])
            row = SummaryRow(str(d.get("id", n)), str(d.get("source", "")), str(d.get("previous", "")), turns,
                             str(d["summary"]), tuple(str(x) for x in d.get("must_include", ())))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise OhloraError(f"{path}:{n}: not a summary row ({type(e).__name__}: {e})") from e
        if not turns or not row.summary.strip():
            raise OhloraError(f"{path}:{n}: a summary row needs turns and a summary")
        rows.append(row)
    if not rows:
        raise OhloraError(f"{path} holds no summary rows")
    return rows


def split_valid(rows: list[SummaryRow], share: float) -> tuple[list[SummaryRow], list[SummaryRow]]:
    """A stable validation split by the hash of each row's source dialogue (rows of one dialogue
    stay together; rows written new are split by their own id)."""
    train, valid = [], []
    for r in rows:
        key = r.source if r.source and not r.source.startswith("new") else r.id
        h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (valid if h < share else train).append(r)
    return train, valid
