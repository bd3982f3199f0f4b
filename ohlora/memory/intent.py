"""The key-intent head: under which memory key, if any, a user message states a fact.

The writer adapter (a 270M model) decides two things at once, whether to store and under which
key, and is careful: it answers `없음` for half the facts people state. This head takes the key
decision off it. For a message it gives P(nothing) and P(key) over the key bank (the keys of the
writer's schema), read from the message's adapter-free EmbeddingGemma embedding (the memory's
own model, with a classification prompt, as the guard reads it) and its character 2- and 3-grams
(`ngrams.py`), by a softmax head (`heads.py`). `IntentWriter` stores under the head's key when
the head is confident (`min_key_prob`, chosen on the writer's validation split), the value decoded
by the writer adapter with that key forced; otherwise the writer's own calibrated decision stands.

Saved in one directory: `intent.yaml` (keys, threshold, prompt, n-gram sizes, figures),
`head.npz` (W (1 + K, D + V), b) and `ngrams.txt`.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.memory.heads import SoftmaxHead, classifier_encoder
from ohlora.memory.ngrams import NgramVocabulary, beside
from ohlora.memory.values import value_from_message
from ohlora.memory.writer import WriteResult, validate_tag
from ohlora.parsing import MemoryTag, normalize_space
from ohlora.paths import resolve_head, shipped_head

POLICY_FILE = "intent.yaml"
CLASSIFY_TEMPLATE = "task: classification | query: {}"
NOTHING = "<nothing>"


@dataclass(frozen=True)
class IntentPolicy:
    keys: tuple[str, ...] = ()
    """The key bank, in the head's class order after class 0 (nothing)."""
    min_key_prob: float = 0.5
    """The head stores under its best key when that key's probability reaches this."""
    skip_nothing_prob: float | None = None
    """When P(nothing) reaches this (and no key reaches min_key_prob), nothing is stored and the
    writer is not run at all: most chat turns state no fact, and its decode is the memory work's
    largest cost. None: the writer decides every message the head leaves to it."""
    base: str = "embeddinggemma-300m"
    query_template: str = CLASSIFY_TEMPLATE
    ngram_sizes: tuple[int, ...] = (2, 3)
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "ngram_sizes", tuple(self.ngram_sizes or ()))
        if not self.keys or len(set(self.keys)) != len(self.keys) or NOTHING in self.keys:
            raise OhloraError("intent policy: keys must be a non-empty list of distinct keys")
        if isinstance(self.min_key_prob, bool) or not isinstance(self.min_key_prob, (int, float)) \
                or not 0 <= self.min_key_prob <= 1:
            raise OhloraError(f"intent policy: min_key_prob must be in [0, 1], not {self.min_key_prob!r}")
        if self.skip_nothing_prob is not None and (isinstance(self.skip_nothing_prob, bool) or not isinstance(
                self.skip_nothing_prob, (int, float)) or not 0 <= self.skip_nothing_prob <= 1):
            raise OhloraError(f"intent policy: skip_nothing_prob must be in [0, 1] or null, not {self.skip_nothing_prob!r}")
        if self.query_template.count("{}") != 1:
            raise OhloraError("intent policy: query_template needs exactly one {}")

    def save(self, directory: Path) -> Path:
        data = {**asdict(self), "keys": list(self.keys), "ngram_sizes": list(self.ngram_sizes)}
        path = Path(directory) / POLICY_FILE
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> IntentPolicy:
        path = Path(directory) / POLICY_FILE
        data = read_yaml(path, "key-intent policy", invalid="not a valid key-intent policy")
        try:
            return cls(**data)
        except TypeError as e:
            raise OhloraError(f"{path}: not a valid key-intent policy ({e})") from e


@dataclass(frozen=True)
class Intent:
    key: str
    """The most probable key of the bank (whatever P(nothing) is)."""
    p_key: float
    p_nothing: float


def prepare(text: str) -> str:
    return normalize_space(unicodedata.normalize("NFC", text))


class KeyIntent:
    def __init__(self, encoder, head: SoftmaxHead, policy: IntentPolicy, ngrams: NgramVocabulary | None = None):
        """`encoder.encode_query(texts)` -> (N, D): the policy's base with its classification prompt."""
        self.encoder, self.head, self.policy, self.ngrams = encoder, head, policy, ngrams
        if head.weight.shape[0] != 1 + len(policy.keys):
            raise OhloraError(f"key-intent head has {head.weight.shape[0]} classes, the policy 1 + {len(policy.keys)}")
        if bool(policy.ngram_sizes) != (ngrams is not None):
            raise OhloraError("key-intent: the policy's ngram_sizes and the n-gram vocabulary go together")

    def features(self, texts: list[str]) -> np.ndarray:
        """(N, D [+ V]): each message's embedding [and its n-grams]."""
        prepared = [prepare(t) for t in texts]
        x = np.asarray(self.encoder.encode_query(prepared), dtype=np.float32)
        return beside(x, prepared, self.ngrams)

    def probs(self, texts: list[str]) -> np.ndarray:
        return self.head.probs(self.features(texts))  # (N, 1 + K)

    def predict(self, texts: list[str]) -> list[Intent]:
        return intents(self.probs(texts), self.policy.keys)

    @classmethod
    def load(cls, directory: Path, shared) -> KeyIntent:
        """The head saved in `directory` on `shared`, a loaded sentence encoder of its base."""
        policy = IntentPolicy.load(directory)
        ngrams = NgramVocabulary.load(directory, policy.ngram_sizes) if policy.ngram_sizes else None
        return cls(classifier_encoder(shared, policy, purpose="intent"), SoftmaxHead.load(directory), policy, ngrams)


def shipped_intent(base: str = "embeddinggemma-300m") -> Path | None:
    return shipped_head("intent", base, POLICY_FILE)


def resolve_intent(which: str) -> Path | None:
    """"default" -> the shipped head (None if not shipped); "none" -> None; else a directory."""
    return resolve_head(which, shipped_intent(), "key-intent", POLICY_FILE, "ohlora train intent")


def intents(probs: np.ndarray, keys: tuple[str, ...]) -> list[Intent]:
    """(N, 1 + K) probabilities -> the best key of each row, its probability and P(nothing)."""
    probs = np.asarray(probs)
    best = probs[:, 1:].argmax(axis=1)  # (N,)
    return [Intent(keys[int(k)], float(row[1 + k]), float(row[0])) for row, k in zip(probs, best)]


class IntentWriter:
    """The key-intent head deciding, the writer adapter writing the value.

    When the head's best key reaches `min_key_prob`, the writer decodes the value with that key's
    opening forced (`ConstrainedWriter.decide(message, key=...)`) and the tag is validated as any
    other; when P(nothing) reaches `skip_nothing_prob` nothing is stored and the writer is not run;
    otherwise the writer's own decision (its thresholds) stands, so the head only adds stores the
    writer was too careful to make."""

    def __init__(self, intent: KeyIntent, writer, fallback: bool = True):
        self.intent, self.writer, self.fallback = intent, writer, fallback
        unknown = [k for k in intent.policy.keys if k not in writer.policy.keys]
        if unknown:
            raise OhloraError(f"the key-intent head names keys the writer's schema lacks: {unknown[:3]}")

    def write(self, message: str, chat_tag=None) -> WriteResult:
        t = time.perf_counter()
        it = self.intent.predict([message])[0]
        return self.decide(message, it, t)

    def decide(self, message: str, it: Intent, t: float | None = None, threshold: float | None = None,
               skip: float | None = None) -> WriteResult:
        """The write for a message whose intent is already known (calibration reuses it);
        `threshold` and `skip` default to the policy's min_key_prob and skip_nothing_prob."""
        t = time.perf_counter() if t is None else t
        threshold = self.intent.policy.min_key_prob if threshold is None else threshold
        skip = self.intent.policy.skip_nothing_prob if skip is None else skip
        if it.p_key >= threshold:
            d = self.writer.decide(message, key=it.key)
            v = validate_tag(d.text, self.writer.fmt.nothing)
            tag, reason, raw = v.tag, v.reason, d.text
        elif skip is not None and it.p_nothing >= skip:
            tag, reason, raw = None, "nothing", ""  # the head is sure there is no fact: no decode
        elif self.fallback:
            res = self.writer.write(message)
            tag, reason, raw = res.tag, res.reason, res.raw
        else:
            tag, reason, raw = None, "nothing", ""
        if tag is not None:
            tag = ruled_value(tag, message)
        return WriteResult(tag, reason, raw, 1000 * (time.perf_counter() - t))


def ruled_value(tag: MemoryTag, message: str) -> MemoryTag:
    """The tag with its value read off the message by rule where there is one (`values.py`:
    나이, 생일, MBTI), else as written."""
    value = value_from_message(tag.key, message)
    if value is None or value == tag.value:
        return tag
    ruled = validate_tag(f"[{tag.key}: {value}]").tag
    return ruled if ruled is not None else tag
