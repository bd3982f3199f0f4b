"""Memory-writer data: user messages with the one tag to store, or nothing.

CSV (UTF-8, a BOM is fine), header `message,tag,also`:
  message  what the user said
  tag      the one `[key: value]` to store, or empty when there is nothing to store
  also     other acceptable answers for evaluation, separated by " | " (optional)

The SFT set's rows are writer rows too: their input, and the tag their answer opens with (or
none). The bundled combination lines are not: their messages are indirect by design (10 of 2,295
contain their value), written to be said *after* the item was stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ohlora.datasets.csvfile import read_csv
from ohlora.datasets.sft import read_rows
from ohlora.errors import OhloraError
from ohlora.memory.writer import validate_tag
from ohlora.parsing import split_tag


@dataclass(frozen=True)
class WriterRow:
    line: int
    message: str
    tag: str
    """The tag to store, "" for nothing."""
    also: tuple[str, ...] = ()
    source: str = ""

    @property
    def due(self) -> bool:
        return bool(self.tag)

    @property
    def accepted(self) -> tuple[str, ...]:
        return ((self.tag,) if self.tag else ()) + self.also


def read_writer_rows(path: Path) -> list[WriterRow]:
    path = Path(path)
    rows, problems = [], []
    for line, rec in read_csv(path, ("message", "tag"), "writer data"):
        msg, tag = (rec.get("message") or "").strip(), (rec.get("tag") or "").strip()
        also = tuple(a.strip() for a in (rec.get("also") or "").split("|") if a.strip())
        for t in ((tag,) if tag else ()) + also:
            if validate_tag(t).tag is None:
                problems.append(f"line {line}: {t!r} is not a valid tag ({validate_tag(t).reason})")
        if not msg:
            problems.append(f"line {line}: empty message")
        rows.append(WriterRow(line, msg, tag, also, path.name))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise OhloraError(f"{path}: " + "; ".join(problems[:3]) + more)
    if not rows:
        raise OhloraError(f"{path} has no rows")
    return rows


def sft_writer_rows(path: Path) -> list[WriterRow]:
    """The SFT set as writer rows: input -> the tag its answer opens with, or nothing."""

    out = []
    for r in read_rows(path):
        tag, _ = split_tag(r.output)
        if tag is not None and validate_tag(tag.text).tag is None:
            continue  # a tag the writer must never write (e.g. a repeated word): not a target
        out.append(WriterRow(r.line, r.input, tag.text if tag else "", (), Path(path).name))
    return out


def split_valid(rows: list[WriterRow], share: float) -> tuple[list[WriterRow], list[WriterRow]]:
    """Deterministic split by a hash of the message: (train, valid)."""
    def bucket(msg: str) -> float:
        return int(hashlib.sha1(msg.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    train = [r for r in rows if bucket(r.message) >= share]
    valid = [r for r in rows if bucket(r.message) < share]
    return train, valid
