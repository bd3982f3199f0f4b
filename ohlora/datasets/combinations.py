"""Memory-encoder data: "combination" lines and the similarity pairs made from them.

A combination line is `[key: value] user message`: a memory item and something a user might say
later for which it is relevant. Crossing every line with every other (cartesian product) gives
pairs (memory of i, message of j) whose target similarity is 1.0 for the same key (synonym groups
count as one key) and otherwise the IoU of the space-split words of the two keys.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from ohlora.datasets.csvfile import read_csv, read_text
from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir

COMB_RE = re.compile(r"^\[([^\[\]:]+):\s*([^\[\]]+)\]\s+(\S.*)$")
PAIR_FIELDS = ["memory_0", "user_prompt_0", "memory_1", "user_prompt_1", "similarity_score"]


@dataclass(frozen=True)
class Comb:
    line: int
    key: str
    value: str
    message: str

    @property
    def memory(self) -> str:
        return f"[{self.key}: {self.value}]"


def parse_combs(text: str, source: str = "combinations") -> list[Comb]:
    combs, errors = [], []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = COMB_RE.match(line)
        if not m:
            errors.append(f"line {n}: expected '[key: value] user message', got {line[:50]!r}")
            continue
        key, value = " ".join(m.group(1).split()), " ".join(m.group(2).split())
        combs.append(Comb(n, key, value, m.group(3).strip()))
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise OhloraError(f"{source}: " + "; ".join(errors[:3]) + more)
    if not combs:
        raise OhloraError(f"{source}: no combination lines")
    return combs


def load_combs(path: Path) -> list[Comb]:
    return parse_combs(read_text(path, "combination file"), str(path))


def key_similarity(a: str, b: str, synonyms: dict[str, str]) -> float:
    a, b = synonyms.get(a, a), synonyms.get(b, b)
    if a == b:
        return 1.0
    wa, wb = set(a.split()), set(b.split())
    return len(wa & wb) / len(wa | wb)


def pair_rows(combs: list[Comb], synonyms: dict[str, str]) -> Iterator[tuple]:
    """The cartesian product of the lines, lazily: len(combs)**2 rows in PAIR_FIELDS order.

    Lazy because it is quadratic: 5,000 lines are 25 million pairs, too many to hold as dicts.
    Each line's canonical key and word set are computed once (the same result as key_similarity).
    """
    keys = [(synonyms.get(c.key, c.key), set(synonyms.get(c.key, c.key).split())) for c in combs]
    for a, (ka, wa) in zip(combs, keys):
        for b, (kb, wb) in zip(combs, keys):
            sim = 1.0 if ka == kb else len(wa & wb) / len(wa | wb)
            yield a.memory, a.message, b.memory, b.message, round(sim, 6)


def make_pairs(combs: list[Comb], synonyms: dict[str, str]) -> list[dict]:
    """pair_rows() as a list of dicts (for the test and training sets, which are used whole)."""
    return [dict(zip(PAIR_FIELDS, r)) for r in pair_rows(combs, synonyms)]


def write_pairs(combs: list[Comb], synonyms: dict[str, str], path: Path) -> int:
    """Write the pairs CSV row by row (memory stays flat however many lines there are), with a
    progress bar on stderr for long runs. The parent directory is created; the file appears only
    when complete (written beside it, then renamed), so an interrupted run leaves no half file.
    Returns the number of pairs."""

    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    n = len(combs)
    try:
        with tmp.open("w", newline="", encoding="utf-8") as f, \
                tqdm(total=n * n, unit="pair", unit_scale=True, desc="pairs", file=sys.stderr,
                     disable=n * n < 1_000_000, mininterval=1.0) as bar:
            w = csv.writer(f)
            w.writerow(PAIR_FIELDS)
            rows = pair_rows(combs, synonyms)
            for _ in range(n):
                w.writerows(itertools.islice(rows, n))  # one line of the product at a time
                bar.update(n)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OhloraError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:  # Ctrl-C included: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise
    return n * n


@dataclass(frozen=True)
class Pair:
    memory: str
    message: str
    score: float


def read_pairs(path: Path) -> list[Pair]:
    """Pairs for training/evaluation: (memory_0, user_prompt_1, similarity_score)."""
    pairs = []
    for line, rec in read_csv(path, ("memory_0", "user_prompt_1", "similarity_score"), "pairs file"):
        try:
            score = float(rec["similarity_score"])
        except ValueError:
            raise OhloraError(f"{path} line {line}: similarity_score {rec['similarity_score']!r} "
                              "is not a number") from None
        pairs.append(Pair(rec["memory_0"].strip(), rec["user_prompt_1"].strip(), score))
    if not pairs:
        raise OhloraError(f"{path} has no pairs")
    return pairs


def read_pairs_from_rows(rows: list[dict]) -> list[Pair]:
    """Pairs (memory_0, user_prompt_1, similarity_score) from make_pairs() rows."""
    return [Pair(r["memory_0"], r["user_prompt_1"], float(r["similarity_score"])) for r in rows]
