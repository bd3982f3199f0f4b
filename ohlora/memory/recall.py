"""The second recall stage: from the bi-encoder's cosines to a calibrated decision.

Stage 1 (`retrieval.Retriever`) scores every stored item of the user by the cosine of its cached
vector with the message's, and keeps the best `shortlist` items. Stage 2 (here) gives each
shortlisted item a probability that it is the memory this message is about, from features:

  cos    the bi-encoder's cosine;
  knn    how strongly the message's nearest training messages vote for the item's key. The
         "bank" holds the memory encoder's vectors of every training combination message with
         its key; the top `neighbours` by cosine vote with weights softmax(cos / temperature),
         each for the item's key as much as its own key resembles it (key IoU, synonyms = 1);
  known  1 if the item's key (or a synonym) occurs in the bank: for a key never seen in
         training, knn says nothing and only the cosine can speak;
  gap    the item's cosine minus the best cosine of an item with another key, or minus 0 if that
         is lower or there is none (how far it stands out from the rest of the user's memories;
         the floor keeps a user with one or two memories from looking like a clear winner);
  cos_known, knn_known  interactions, so that seen and unseen keys get their own weights;
  cos_ref, gap_ref  the same cosine and gap from the reference encoder: the memory adapter's base
         model with the adapter switched off (`reference: base`). For EmbeddingGemma that is its
         own pretrained retrieval embedding, which ranks keys never seen in training better than
         the fine-tuned one does; together they beat either (docs/memory.md). It costs a second
         forward pass per message; its item vectors are cached like the others.
  topic, topic_known, topic_gap  the key-intent of the message as recall sees it: a softmax head
         (`TopicHead`, `recall_topic.npz`) on the reference encoder's message vector gives
         P(key | message) over the keys of training (what the message is about, not whether it
         states a fact: that is the writer's head); topic is the item key's probability (synonyms
         as one), topic_known 1 if the head knows the key, topic_gap its lead over the best item
         of another key. No forward pass is added: the reference vector is computed anyway.

A logistic regression on those, fit on the validation split, gives P(relevant); the threshold on
it is chosen on the same split for a false-recall target (`ohlora train recall`). The policy is
saved as `recall.yaml` beside the memory adapter, the bank as `recall_bank.npz`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.memory.heads import SoftmaxHead

POLICY_FILE = "recall.yaml"
BANK_FILE = "recall_bank.npz"
TOPIC_FILE = "recall_topic.npz"
TOPIC_FEATURES = ("topic", "topic_known", "topic_gap")
FEATURES = ("cos", "knn", "known", "gap", "cos_known", "knn_known", "cos_ref", "gap_ref") + TOPIC_FEATURES
REFERENCES = ("", "base")
METHODS = ("cosine", "calibrated")


@dataclass(frozen=True)
class RecallPolicy:
    method: str = "cosine"
    """"cosine": recall the best item if its cosine reaches `threshold` (the original design);
    "calibrated": score the shortlist with the logistic model below, threshold on its probability."""
    threshold: float = 0.6
    """On the cosine for "cosine", on the calibrated probability for "calibrated"."""
    shortlist: int = 10
    """Items (by cosine) that stage 2 scores; the others are not recalled."""
    features: tuple[str, ...] = ()
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    neighbours: int = 10
    """Bank neighbours that vote in the knn feature."""
    temperature: float = 0.05
    """Softmax temperature over the neighbours' cosines."""
    reference: str = ""
    """"base": the cos_ref/gap_ref features come from the memory adapter's base model with the
    adapter off; "": no reference encoder."""
    fit: dict = field(default_factory=dict)
    """How and on what the policy was fit (split, metrics there): for the record."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise OhloraError(f"recall policy: method must be one of {METHODS}, not {self.method!r}")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise OhloraError(f"recall policy: unknown features {sorted(unknown)}; known: {list(FEATURES)}")
        if self.method == "calibrated" and len(self.coef) != len(self.features):
            raise OhloraError("recall policy: one coefficient per feature is needed")
        if self.shortlist < 1 or self.neighbours < 1 or self.temperature <= 0:
            raise OhloraError("recall policy: shortlist and neighbours must be >= 1, temperature > 0")
        if self.reference not in REFERENCES:
            raise OhloraError(f"recall policy: reference must be one of {REFERENCES}, not {self.reference!r}")
        if any(f.endswith("_ref") for f in self.features) and not self.reference:
            raise OhloraError("recall policy: the *_ref features need `reference: base`")
        if self.needs_topic and not self.reference:
            raise OhloraError("recall policy: the topic features read the reference encoder: they need `reference: base`")

    @property
    def needs_bank(self) -> bool:
        return self.method == "calibrated" and any(f.startswith(("knn", "known", "cos_known")) for f in self.features)

    @property
    def needs_topic(self) -> bool:
        return self.method == "calibrated" and any(f.startswith("topic") for f in self.features)

    def save(self, directory: Path) -> Path:
        data = asdict(self)
        data["features"], data["coef"] = list(self.features), [float(c) for c in self.coef]
        path = Path(directory) / POLICY_FILE
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path | None) -> "RecallPolicy":
        """The policy saved beside a memory adapter; the plain cosine policy if there is none."""
        path = Path(directory) / POLICY_FILE if directory is not None else None
        if path is None or not path.is_file():
            return cls()
        data = read_yaml(path, "recall policy", invalid="not a valid recall policy")
        try:
            return cls(**{**data, "features": tuple(data.get("features", ())),
                          "coef": tuple(float(c) for c in data.get("coef", ()))})
        except (TypeError, ValueError) as e:
            raise OhloraError(f"{path}: not a valid recall policy ({e})") from e


def canonical_key(key: str, synonyms: dict[str, str]) -> str:
    """The key with its spaces normalized, as its synonym group's name (좋아하는 아이돌 -> 좋아하는 가수)."""
    key = " ".join(key.split())
    return synonyms.get(key, key)


class KeyBank:
    """Training messages' vectors (N, D) with their keys; votes for keys by nearest neighbours."""

    def __init__(self, vectors: np.ndarray, keys: list[str], synonyms: dict[str, str] | None = None):
        self.vectors = np.asarray(vectors, dtype=np.float32)  # (N, D), rows L2-normalized
        self.synonyms = synonyms or {}
        self.raw_keys = list(keys)
        self.fingerprint = ""
        canon = [self.canon(k) for k in keys]
        self.keys = sorted(set(canon))  # (U,) distinct canonical keys
        index = {k: i for i, k in enumerate(self.keys)}
        self.key_of = np.array([index[k] for k in canon], dtype=np.int64)  # (N,) -> key index
        self._index = index
        self._words = [set(k.split()) for k in self.keys]
        self._sim_cache: dict[str, np.ndarray] = {}
        self.topic: TopicHead | None = None
        """The topic head fit beside this bank (`ohlora train recall`), if any; saved on its own."""

    def canon(self, key: str) -> str:
        return canonical_key(key, self.synonyms)

    def knows(self, key: str) -> bool:
        return self.canon(key) in self._index

    def key_similarity(self, key: str) -> np.ndarray:
        """(U,) similarity of `key` to every bank key: 1 for the same key (synonyms), else word IoU."""
        key = self.canon(key)
        hit = self._sim_cache.get(key)
        if hit is None:
            w = set(key.split())
            hit = np.array([1.0 if k == key else len(w & kw) / len(w | kw) for k, kw in zip(self.keys, self._words)],
                           dtype=np.float32)
            self._sim_cache[key] = hit
        return hit

    def votes(self, q: np.ndarray, neighbours: int, temperature: float) -> np.ndarray:
        """(U,) weight of each bank key among the message's nearest training messages (sums to 1)."""
        sims = self.vectors @ q  # (N,)
        m = min(neighbours, len(sims))
        top = np.argpartition(-sims, m - 1)[:m]
        w = np.exp((sims[top] - sims[top].max()) / temperature)
        out = np.zeros(len(self.keys), dtype=np.float32)
        np.add.at(out, self.key_of[top], w / w.sum())
        return out

    def save(self, directory: Path, fingerprint: str = "") -> Path:
        """`fingerprint`: the adapter's content hash, so that a stale bank is never reused."""
        path = Path(directory) / BANK_FILE
        np.savez_compressed(path, vectors=self.vectors.astype(np.float16), keys=np.array(self.raw_keys),
                            fingerprint=np.array(fingerprint))
        return path

    @classmethod
    def load(cls, directory: Path, synonyms: dict[str, str] | None = None) -> "KeyBank":
        path = Path(directory) / BANK_FILE
        if not path.is_file():
            raise OhloraError(f"{path} is missing: the recall policy needs its bank (run `ohlora train recall`)")
        data = np.load(path, allow_pickle=False)
        bank = cls(data["vectors"].astype(np.float32), [str(k) for k in data["keys"]], synonyms)
        bank.fingerprint = str(data["fingerprint"]) if "fingerprint" in data else ""
        return bank


class TopicHead:
    """P(key | message) over the training keys (canonical, synonyms as one), from the reference
    encoder's message vector: a softmax head (W (U, D), b (U,)) fit on the training messages."""

    def __init__(self, head: SoftmaxHead, keys: list[str], synonyms: dict[str, str] | None = None):
        if head.weight.shape[0] != len(keys):
            raise OhloraError(f"recall topic head has {head.weight.shape[0]} classes for {len(keys)} keys")
        self.head, self.keys, self.synonyms = head, list(keys), synonyms or {}
        self._index = {k: i for i, k in enumerate(self.keys)}

    def canon(self, key: str) -> str:
        return canonical_key(key, self.synonyms)

    def item_probs(self, ref_q: np.ndarray, item_keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """((N,) P(item's key), (N,) 1 where the head knows the key) for one message vector (D,)."""
        probs = self.head.probs(np.asarray(ref_q, dtype=np.float32)[None])[0]  # (U,)
        idx = [self._index.get(self.canon(k), -1) for k in item_keys]
        known = np.array([1.0 if i >= 0 else 0.0 for i in idx], dtype=np.float32)
        return np.array([probs[i] if i >= 0 else 0.0 for i in idx], dtype=np.float32), known

    def save(self, directory: Path, fingerprint: str = "") -> Path:
        path = Path(directory) / TOPIC_FILE
        np.savez_compressed(path, weight=self.head.weight.astype(np.float32), bias=self.head.bias.astype(np.float32),
                            keys=np.array(self.keys), fingerprint=np.array(fingerprint))
        return path

    @classmethod
    def load(cls, directory: Path, synonyms: dict[str, str] | None = None) -> TopicHead:
        path = Path(directory) / TOPIC_FILE
        if not path.is_file():
            raise OhloraError(f"{path} is missing: the recall policy needs its topic head (run `ohlora train recall`)")
        with np.load(path, allow_pickle=False) as z:
            return cls(SoftmaxHead(z["weight"], z["bias"]), [str(k) for k in z["keys"]], synonyms)


def candidate_features(cos: np.ndarray, item_keys: list[str], rows: np.ndarray, q: np.ndarray | None,
                       bank: KeyBank | None, policy: RecallPolicy, names: tuple[str, ...],
                       ref_cos: np.ndarray | None = None, ref_q: np.ndarray | None = None,
                       topic: TopicHead | None = None) -> np.ndarray:
    """(R, F) features of the candidates `rows` among a user's N items for one message.
    `cos`: (N,) every item's cosine (gap looks at all of them); `q`: (D,) the message's vector;
    `ref_cos`: (N,) the reference encoder's cosines (for cos_ref, gap_ref); `ref_q`: (D',) its
    message vector, which `topic` reads (for the topic features)."""
    cols: dict[str, np.ndarray] = {"cos": cos[rows].astype(np.float32)}
    if any(f.endswith("_ref") for f in names):
        if ref_cos is None:
            raise OhloraError("the recall policy's *_ref features need the reference encoder's cosines")
        cols["cos_ref"] = ref_cos[rows].astype(np.float32)
        cols["gap_ref"] = gap_to_other_keys(ref_cos, item_keys)[rows]
    keys = [item_keys[i] for i in rows]
    if any(f in names for f in ("knn", "known", "cos_known", "knn_known")):
        if bank is None or q is None:
            raise OhloraError("the recall policy's knn features need the bank")
        votes = bank.votes(q, policy.neighbours, policy.temperature)  # (U,)
        cols["knn"] = np.array([float(bank.key_similarity(k) @ votes) for k in keys], dtype=np.float32)
        cols["known"] = np.array([1.0 if bank.knows(k) else 0.0 for k in keys], dtype=np.float32)
        cols["cos_known"] = cols["cos"] * cols["known"]
        cols["knn_known"] = cols["knn"] * cols["known"]
    if "gap" in names:
        cols["gap"] = gap_to_other_keys(cos, item_keys)[rows]
    if any(f.startswith("topic") for f in names):
        if topic is None or ref_q is None:
            raise OhloraError("the recall policy's topic features need its topic head and the reference vector")
        p, known = topic.item_probs(ref_q, item_keys)  # (N,), (N,)
        cols["topic"], cols["topic_known"] = p[rows], known[rows]
        cols["topic_gap"] = gap_to_other_keys(p, item_keys)[rows]
    return np.stack([cols[f] for f in names], axis=1).reshape(len(rows), len(names))


def gap_to_other_keys(cos: np.ndarray, keys: list[str], floor: float = 0.0) -> np.ndarray:
    """(N,) each item's cosine minus the best cosine among items with a different key, that best
    taken as at least `floor` (and `floor` when every item has the same key). O(N): only the two
    best keys matter."""
    best: dict[str, float] = {}
    for c, k in zip(cos, keys):
        best[k] = max(best.get(k, -2.0), float(c))
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    out = np.empty(len(cos), dtype=np.float32)
    for i, (c, k) in enumerate(zip(cos, keys)):
        other = next((v for kk, v in ranked if kk != k), floor)
        out[i] = float(c) - max(other, floor)
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


class Decider:
    """Stage 2: scores stage 1's shortlist with the policy; items outside it score -inf."""

    def __init__(self, policy: RecallPolicy, bank: KeyBank | None = None, topic: TopicHead | None = None):
        if policy.needs_bank and bank is None:
            raise OhloraError("the recall policy needs its bank (recall_bank.npz beside the memory adapter)")
        if policy.needs_topic and topic is None:
            raise OhloraError("the recall policy needs its topic head (recall_topic.npz beside the memory adapter)")
        self.policy, self.bank, self.topic = policy, bank, topic

    @property
    def needs_reference(self) -> bool:
        return self.policy.method == "calibrated" and bool(self.policy.reference)

    def score(self, cos: np.ndarray, item_keys: list[str], q: np.ndarray | None = None,
              ref_cos: np.ndarray | None = None, ref_q: np.ndarray | None = None) -> np.ndarray:
        """(N,) decision scores for N items: the cosine, or the calibrated probability. `ref_cos`
        (N,) and `ref_q` (D',): the reference encoder's cosines and message vector."""
        p = self.policy
        if p.method == "cosine":
            return np.asarray(cos, dtype=np.float32)
        out = np.full(len(cos), -np.inf, dtype=np.float32)
        if not len(cos):
            return out
        short = np.argsort(-cos, kind="stable")[:p.shortlist]  # stage 1's shortlist, (S,)
        x = candidate_features(cos, item_keys, short, q, self.bank, p, p.features, ref_cos, ref_q, self.topic)  # (S, F)
        out[short] = sigmoid(x @ np.asarray(p.coef, dtype=np.float32) + p.intercept)
        return out
