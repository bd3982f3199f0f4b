"""ExampleBank: the SFT pairs nearest to a message, shown as worked turns before the history.

A 270M model answers better when it sees how it answered something close (issue 24, part 4).
The bank holds her own training pairs (persona, small talk and boundary rows: rows that teach a
memory tag, a recall or a date are left out, since their answers carry a user's facts or a day
that are not this user's); the sentence encoder the chat loads anyway (EmbeddingGemma) embeds
their messages once, and a message's `k` nearest pairs above `min_cos` are shown, nearest last.

Held-out evaluation prompts must stay out of the bank: `exclude` drops any pair whose message
is one of them (spaces and punctuation ignored).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError
from ohlora.memory.vector_cache import encoded
from ohlora.parsing import split_tag
from ohlora.paths import bundled
from ohlora.store.conversations import Turn

DATED = re.compile(r"\d|요일|살\b|살[이야!]|생일|오늘|내일|모레|주말")
"""An answer that names a day, a date or an age holds on one day only: never in the bank."""

BANK_CATEGORIES = ("persona", "smalltalk", "confession", "meet", "rude")
"""SFT categories whose answers hold for any user on any day."""


def squash(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", text).lower()


def read_bank(path: Path, categories=BANK_CATEGORIES, exclude=()) -> list[Turn]:
    """The (message, answer) pairs of an SFT CSV in `categories`, with no memory column, minus
    any whose message is in `exclude`; duplicates once."""
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise OhloraError(f"cannot read the example bank {path}: {e.strerror}") from None
    if rows and not {"input", "output", "category"} <= set(rows[0]):
        raise OhloraError(f"example bank {path}: needs input, output and category columns")
    banned = {squash(t) for t in exclude}
    seen, out = set(), []
    for r in rows:
        message, answer = (r.get("input") or "").strip(), (r.get("output") or "").strip()
        if r.get("category") not in categories or (r.get("memory") or "").strip() or (r.get("today") or "").strip() \
                or not message or not answer or DATED.search(answer):
            continue
        _, answer = split_tag(answer)
        key = squash(message)
        if not answer or key in banned or key in seen:
            continue
        seen.add(key)
        out.append(Turn(message, answer))
    return out


class ExampleBank:
    def __init__(self, encoder, pairs: list[Turn], cache_dir: Path | None = None):
        if not pairs:
            raise OhloraError("the example bank is empty")
        self.encoder = encoder
        self.pairs = pairs
        self.cache_dir = cache_dir
        self._vectors: np.ndarray | None = None  # (N, D), L2-normalized

    def vectors(self) -> np.ndarray:
        """The bank's message vectors, computed once (and cached on disk under `cache_dir`)."""
        if self._vectors is None:
            self._vectors = encoded(self.encoder, [p.user for p in self.pairs], self.cache_dir, "examples")
        return self._vectors

    def nearest(self, message: str, k: int, min_cos: float = 0.0) -> list[Turn]:
        """Up to `k` pairs whose message is closest to `message` (cosine >= min_cos), nearest last;
        never a pair with the same message."""
        if k <= 0:
            return []
        vecs = self.vectors()
        q = np.asarray(self.encoder.encode_query([message]), dtype=np.float32)[0]  # (D,)
        sims = vecs @ q  # (N,)
        own = squash(message)
        order = [i for i in np.argsort(-sims) if sims[i] >= min_cos and squash(self.pairs[i].user) != own][:k]
        return [self.pairs[i] for i in reversed(order)]


HELD_OUT = {
    "csv": [("dialogues", f) for f in ("persona_questions.csv", "persona_questions_paraphrased.csv",
                                       "persona_questions_heldout.csv", "persona_questions_round5.csv", "dates_questions.csv",
                                       "dates_questions_paraphrased.csv", "dates_questions_heldout.csv")],
    "jsonl": [("dialogues", "test.jsonl"), ("summaries", "long_dialogues.jsonl"), ("memory_use", "test.jsonl"),
              ("memory_loop", "test.jsonl"), ("review", "prompts.jsonl")],
}
"""The bundled evaluation sets whose messages never enter the bank."""


def held_out_messages() -> set[str]:
    """Every user message of the bundled evaluation sets (questions, dialogue turns, finals,
    memory-use and memory-loop messages, the side-by-side review prompts)."""
    out: set[str] = set()
    for folder, name in HELD_OUT["csv"]:
        with Path(bundled("data", folder, name)).open(encoding="utf-8-sig", newline="") as f:
            out |= {r["question"] for r in csv.DictReader(f) if r.get("question")}
    for folder, name in HELD_OUT["jsonl"]:
        for line in Path(bundled("data", folder, name)).read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                out |= set(_messages(json.loads(line)))
    return out


def _messages(d: dict):
    """The user's lines anywhere in an evaluation row."""
    for k in ("message", "final", "say", "question"):
        if isinstance(d.get(k), str):
            yield d[k]
    for t in d.get("turns", []) + d.get("history", []):
        yield t.get("user", "")
    for f in d.get("facts", []):
        yield from _messages(f)
    yield from d.get("filler", [])
    if isinstance(d.get("ask"), dict):
        yield from _messages(d["ask"])
