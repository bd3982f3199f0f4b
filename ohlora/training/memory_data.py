"""Memory-encoder data: "combination" lines and the similarity pairs made from them.

A combination line is `[key: value] user message`: a memory item and something a user might say
later for which it is relevant. Crossing every line with every other (cartesian product) gives
pairs (memory of i, message of j) whose target similarity is 1.0 for the same key (synonym groups
count as one key) and otherwise the IoU of the space-split words of the two keys.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ohlora.errors import OhloraError

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
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise OhloraError(f"combination file {path} not found") from e
    except UnicodeDecodeError as e:
        raise OhloraError(f"{path} is not UTF-8 text") from e
    return parse_combs(text, str(path))


def load_synonyms(path: Path | None = None) -> dict[str, str]:
    """key -> canonical key (the first of its group)."""
    if path is None:
        from ohlora.training.llm_config import bundled

        path = Path(bundled("memory_synonyms.yaml"))
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (FileNotFoundError, yaml.YAMLError) as e:
        raise OhloraError(f"synonym file {path}: {e}") from e
    groups = data.get("groups", []) if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise OhloraError(f"synonym file {path} must hold `groups:` as a list of lists of keys")
    return {" ".join(str(k).split()): " ".join(str(g[0]).split()) for g in groups for k in g}


def key_similarity(a: str, b: str, synonyms: dict[str, str]) -> float:
    a, b = synonyms.get(a, a), synonyms.get(b, b)
    if a == b:
        return 1.0
    wa, wb = set(a.split()), set(b.split())
    return len(wa & wb) / len(wa | wb)


def make_pairs(combs: list[Comb], synonyms: dict[str, str]) -> list[dict]:
    """The cartesian product of the lines: len(combs)**2 rows."""
    return [
        {"memory_0": a.memory, "user_prompt_0": a.message, "memory_1": b.memory, "user_prompt_1": b.message,
         "similarity_score": round(key_similarity(a.key, b.key, synonyms), 6)}
        for a in combs for b in combs
    ]


def write_pairs(rows: list[dict], path: Path) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, PAIR_FIELDS)
        w.writeheader()
        w.writerows(rows)


@dataclass(frozen=True)
class Pair:
    memory: str
    message: str
    score: float


def read_pairs(path: Path) -> list[Pair]:
    """Pairs for training/evaluation: (memory_0, user_prompt_1, similarity_score)."""
    try:
        with Path(path).open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            need = {"memory_0", "user_prompt_1", "similarity_score"}
            if not need <= set(reader.fieldnames or []):
                raise OhloraError(f"{path}: needs columns {sorted(need)}")
            pairs = []
            for rec in reader:
                try:
                    score = float(rec["similarity_score"])
                except ValueError:
                    raise OhloraError(f"{path} line {reader.line_num}: similarity_score is not a number") from None
                pairs.append(Pair(rec["memory_0"].strip(), rec["user_prompt_1"].strip(), score))
    except FileNotFoundError as e:
        raise OhloraError(f"pairs file {path} not found") from e
    if not pairs:
        raise OhloraError(f"{path} has no pairs")
    return pairs


def read_pairs_from_rows(rows: list[dict]) -> list[Pair]:
    """Pairs (memory_0, user_prompt_1, similarity_score) from make_pairs() rows."""
    return [Pair(r["memory_0"], r["user_prompt_1"], float(r["similarity_score"])) for r in rows]
