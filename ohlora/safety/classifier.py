"""GuardClassifier: a softmax head on the memory base's sentence embedding, with calibrated thresholds.

The message is normalized (`normalize_for_guard`), embedded by EmbeddingGemma with its own
classification prompt and the memory adapter switched off (the same model the memory already
loads, so the guard adds no model), and scored by a linear softmax head over the categories
that reads the embedding and, when the policy names `ngram_sizes`, the message's character
n-grams beside it (`ohlora.memory.ngrams`: the surface cues, such as who is asked, that the embedding blurs).
A category fires when its probability reaches its threshold; the thresholds were chosen on a
validation split so that at most ~1% of new normal messages should fire anything (see
`ohlora.training.guard.calibrate`). A firing within the category's warning band (its threshold
up to `threshold + warn_band`) is "near": the escalation only warns for it and never blocks, so
a borderline everyday message costs a user at most a warning. All of it is saved in one
directory: `guard.yaml` (categories, thresholds, warning bands, encoder prompt, n-gram sizes),
`head.npz` (W, b) and `ngrams.txt` (the n-gram vocabulary, when there is one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.memory.heads import SoftmaxHead
from ohlora.memory.ngrams import NgramVocabulary, beside
from ohlora.safety.normalize import normalize_for_guard

CATEGORIES = ("normal", "love", "politics", "family_insult", "hate", "harmful")
NORMAL = "normal"
POLICY_FILE = "guard.yaml"
CLASSIFY_TEMPLATE = "task: classification | query: {}"
DEFAULT_WARN_BAND = 0.1


@dataclass(frozen=True)
class GuardPolicy:
    categories: tuple[str, ...] = CATEGORIES
    thresholds: dict = field(default_factory=dict)
    """Per non-normal category: the probability at which it fires."""
    warn_band: float | dict = DEFAULT_WARN_BAND
    """How far (in probability) above its threshold a category's score still only warns: one
    number for every category, or one per category (missing ones get DEFAULT_WARN_BAND). A block
    needs `block_threshold(c)` = threshold + band. A guard.yaml without it gets the default."""
    base: str = "embeddinggemma-300m"
    """The sentence encoder the head was trained on (its adapter-free embeddings)."""
    query_template: str = CLASSIFY_TEMPLATE
    normalize: bool = True
    ngram_sizes: tuple[int, ...] = ()
    """Character n-gram sizes the head reads beside the embedding (its vocabulary: ngrams.txt);
    () for the embedding alone, which is what a guard.yaml without the field gets."""
    metrics: dict = field(default_factory=dict)
    """Validation figures at these thresholds (for the record)."""

    def __post_init__(self):
        cats = tuple(self.categories)
        object.__setattr__(self, "categories", cats)
        sizes = tuple(self.ngram_sizes or ())
        object.__setattr__(self, "ngram_sizes", sizes)
        if any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 5 for n in sizes):
            raise OhloraError(f"guard policy: ngram_sizes must be integers 1..5, not {list(sizes)!r}")
        if NORMAL not in cats or len(set(cats)) != len(cats):
            raise OhloraError(f"guard policy: categories must be unique and include {NORMAL!r}")
        for c, t in self.thresholds.items():
            if c not in cats or c == NORMAL or not isinstance(t, (int, float)) or not 0 < t <= 1:
                raise OhloraError(f"guard policy: bad threshold {c}: {t!r}")
        if self.query_template.count("{}") != 1:
            raise OhloraError("guard policy: query_template needs exactly one {}")
        bands = self.warn_band if isinstance(self.warn_band, dict) else {None: self.warn_band}
        for c, b in bands.items():
            if (c is not None and (c not in cats or c == NORMAL)) or isinstance(b, bool) \
                    or not isinstance(b, (int, float)) or not 0 <= b < 1:
                raise OhloraError(f"guard policy: bad warn_band {'' if c is None else c + ': '}{b!r} "
                                  "(a probability margin in [0, 1), one number or one per category)")

    def threshold(self, category: str) -> float:
        return float(self.thresholds.get(category, 0.5))

    def band(self, category: str) -> float:
        if isinstance(self.warn_band, dict):
            return float(self.warn_band.get(category, DEFAULT_WARN_BAND))
        return float(self.warn_band)

    def block_threshold(self, category: str) -> float:
        """The probability from which a firing of `category` may block (below it: a warning only)."""
        return self.threshold(category) + self.band(category)

    def save(self, directory: Path) -> None:
        data = {**asdict(self), "categories": list(self.categories), "ngram_sizes": list(self.ngram_sizes)}
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
    near: bool = False
    """Fired, but below the category's block threshold (within its warning band): a warning only."""

    @property
    def fired(self) -> bool:
        return self.category != NORMAL

    def as_dict(self) -> dict:
        return {"category": self.category, "score": round(self.score, 4), "near": self.near,
                "probs": {k: round(v, 4) for k, v in self.probs.items()}}


def decide(probs: np.ndarray, policy: GuardPolicy) -> list[Verdict]:
    """(N, C) probabilities -> one verdict each: the category furthest above its threshold (by the
    ratio of its probability to the threshold), "near" when below that category's block threshold."""
    cats = policy.categories
    out = []
    for row in np.asarray(probs):
        fired = [(row[j] / policy.threshold(c), c, row[j]) for j, c in enumerate(cats)
                 if c != NORMAL and row[j] >= policy.threshold(c)]
        d = {c: float(row[j]) for j, c in enumerate(cats)}
        if fired:
            _, c, p = max(fired)
            out.append(Verdict(c, float(p), d, near=bool(p < policy.block_threshold(c))))
        else:
            out.append(Verdict(NORMAL, max(v for c, v in d.items() if c != NORMAL), d))
    return out


class GuardClassifier:
    def __init__(self, encoder, head: SoftmaxHead, policy: GuardPolicy, ngrams: NgramVocabulary | None = None):
        """`encoder.encode_query(texts)` -> (N, D): the policy's base with the classification prompt;
        `ngrams`: the vocabulary of the policy's n-grams (needed when it names any)."""
        self.encoder, self.head, self.policy, self.ngrams = encoder, head, policy, ngrams
        if head.weight.shape[0] != len(policy.categories):
            raise OhloraError(f"guard head has {head.weight.shape[0]} classes, the policy {len(policy.categories)}")
        if bool(policy.ngram_sizes) != (ngrams is not None):
            raise OhloraError("guard: the policy's ngram_sizes and the n-gram vocabulary go together")
        if ngrams is not None and head.weight.shape[1] <= len(ngrams):
            raise OhloraError(f"guard head reads {head.weight.shape[1]} features, fewer than its {len(ngrams)} n-grams")

    def prepare(self, texts: list[str]) -> list[str]:
        return [normalize_for_guard(t) for t in texts] if self.policy.normalize else list(texts)

    def features(self, texts: list[str]) -> np.ndarray:
        """(N, D [+ V]): the embedding of each prepared message [and its n-grams]."""
        prepared = self.prepare(texts)
        x = np.asarray(self.encoder.encode_query(prepared), dtype=np.float32)
        return beside(x, prepared, self.ngrams)

    def probs(self, texts: list[str]) -> np.ndarray:
        return self.head.probs(self.features(texts))  # (N, C)

    def classify(self, texts: list[str]) -> list[Verdict]:
        """One verdict per message; a message with nothing left after normalization (only
        invisible characters, emoji or punctuation) is "normal" at score 0 without being embedded."""
        texts = list(texts)
        shown = [i for i, t in enumerate(self.prepare(texts)) if t] if self.policy.normalize else list(range(len(texts)))
        blank = Verdict(NORMAL, 0.0, {c: float(c == NORMAL) for c in self.policy.categories})
        out = [blank] * len(texts)
        if shown:
            for i, v in zip(shown, decide(self.probs([texts[i] for i in shown]), self.policy)):
                out[i] = v
        return out
