"""GuardClassifier: a softmax head on the memory base's sentence embedding, with calibrated thresholds.

The message is normalized (`normalize_for_guard`), embedded by EmbeddingGemma with its own
classification prompt and the memory adapter switched off (the same model the memory already
loads, so the guard adds no model), and scored by a linear softmax head over the categories.
A category fires when its probability reaches its threshold; the thresholds were chosen on a
validation split so that at most ~1% of normal messages fire anything. All of it is saved in
one directory: `guard.yaml` (categories, thresholds, encoder prompt) and `head.npz` (W, b).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.safety.heads import SoftmaxHead
from ohlora.safety.normalize import normalize_for_guard

CATEGORIES = ("normal", "love", "politics", "family_insult", "hate", "harmful")
NORMAL = "normal"
POLICY_FILE = "guard.yaml"
CLASSIFY_TEMPLATE = "task: classification | query: {}"


@dataclass(frozen=True)
class GuardPolicy:
    categories: tuple[str, ...] = CATEGORIES
    thresholds: dict = field(default_factory=dict)
    """Per non-normal category: the probability at which it fires."""
    base: str = "embeddinggemma-300m"
    """The sentence encoder the head was trained on (its adapter-free embeddings)."""
    query_template: str = CLASSIFY_TEMPLATE
    normalize: bool = True
    metrics: dict = field(default_factory=dict)
    """Validation figures at these thresholds (for the record)."""

    def __post_init__(self):
        cats = tuple(self.categories)
        object.__setattr__(self, "categories", cats)
        if NORMAL not in cats or len(set(cats)) != len(cats):
            raise OhloraError(f"guard policy: categories must be unique and include {NORMAL!r}")
        for c, t in self.thresholds.items():
            if c not in cats or c == NORMAL or not isinstance(t, (int, float)) or not 0 < t <= 1:
                raise OhloraError(f"guard policy: bad threshold {c}: {t!r}")
        if self.query_template.count("{}") != 1:
            raise OhloraError("guard policy: query_template needs exactly one {}")

    def threshold(self, category: str) -> float:
        return float(self.thresholds.get(category, 0.5))

    def save(self, directory: Path) -> None:
        data = {**asdict(self), "categories": list(self.categories)}
        (Path(directory) / POLICY_FILE).write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                                                   encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "GuardPolicy":
        path = Path(directory) / POLICY_FILE
        data = read_yaml(path, "guard policy", missing="not a guard directory (train one with `ohlora train guard`)")
        known = {f for f in cls.__dataclass_fields__}
        if set(data) - known:
            raise OhloraError(f"{path}: unknown fields {sorted(set(data) - known)}")
        return cls(**data)


@dataclass(frozen=True)
class Verdict:
    category: str
    """The category that fired, or "normal"."""
    score: float
    """Its probability (for "normal": the highest non-normal probability, i.e. how close it came)."""
    probs: dict

    @property
    def fired(self) -> bool:
        return self.category != NORMAL

    def as_dict(self) -> dict:
        return {"category": self.category, "score": round(self.score, 4),
                "probs": {k: round(v, 4) for k, v in self.probs.items()}}


def decide(probs: np.ndarray, policy: GuardPolicy) -> list[Verdict]:
    """(N, C) probabilities -> one verdict each: the most probable category above its threshold."""
    cats = policy.categories
    out = []
    for row in np.asarray(probs):
        fired = [(row[j] / policy.threshold(c), c, row[j]) for j, c in enumerate(cats)
                 if c != NORMAL and row[j] >= policy.threshold(c)]
        d = {c: float(row[j]) for j, c in enumerate(cats)}
        if fired:
            _, c, p = max(fired)
            out.append(Verdict(c, float(p), d))
        else:
            out.append(Verdict(NORMAL, max(v for c, v in d.items() if c != NORMAL), d))
    return out


class GuardClassifier:
    def __init__(self, encoder, head: SoftmaxHead, policy: GuardPolicy):
        """`encoder.encode_query(texts)` -> (N, D): the policy's base with the classification prompt."""
        self.encoder, self.head, self.policy = encoder, head, policy
        if head.weight.shape[0] != len(policy.categories):
            raise OhloraError(f"guard head has {head.weight.shape[0]} classes, the policy {len(policy.categories)}")

    def prepare(self, texts: list[str]) -> list[str]:
        return [normalize_for_guard(t) for t in texts] if self.policy.normalize else list(texts)

    def probs(self, texts: list[str]) -> np.ndarray:
        return self.head.probs(self.encoder.encode_query(self.prepare(texts)))  # (N, C)

    def classify(self, texts: list[str]) -> list[Verdict]:
        return decide(self.probs(texts), self.policy)
