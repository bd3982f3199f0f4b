"""TopicFinder: which fact of her card a message asks, by its nearest labelled questions.

The fact check (`grounding.FactCheck`) knows a question about her card by patterns
(`몇 살이야?` -> age). Users also ask indirectly (`생일 케이크 예약하려는데 며칠로 하면 돼?`,
`힘들 때 제일 먼저 연락하는 친구 누구야?`), which no pattern lists. The finder embeds a
bundled set of labelled messages once (`ohlora/assets/persona/topic_questions.jsonl`: questions
per card topic, and as many `none` messages that ask none: the user's own facts, topic words
that ask nothing, her opinions, small talk) with the chat's EmbeddingGemma, and names a topic
when a message's `k` nearest labelled messages agree on it:

    top-1 cosine >= sure_cos: the top-1's topic (`none` included);
    else top-1 cosine >= min_cos, and >= min_votes of the k nearest carry the same topic (not `none`).

The fact check asks it only when no pattern knew the message (`FactCheck.asked`). The settings
were chosen on the fixed and paraphrased persona questions (rounds 1-3) and on 377 messages that
ask no card fact (README, "Fact check"); rounds 4 and 5 measure it.

A topic it names is checked like one the patterns found: the answer must give the fact, else
it is generated again and, failing that, said from the card.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError
from ohlora.memory.vector_cache import encoded

NONE = "none"


@dataclass(frozen=True)
class TopicSettings:
    k: int = 5
    min_cos: float = 0.75
    min_votes: int = 2
    sure_cos: float = 0.85


def read_topic_questions(path: Path, topics: set[str] | None = None) -> list[tuple[str, str]]:
    """(message, topic) pairs of a JSONL file of {"message", "topic"}; topics outside `topics`
    (a card without that field) are dropped, `none` is kept."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise OhloraError(f"cannot read the topic questions {path}: {e.strerror}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            raise OhloraError(f"{Path(path).name} line {i}: not JSON") from None
        if not isinstance(d, dict) or not str(d.get("message") or "").strip() or not str(d.get("topic") or "").strip():
            raise OhloraError(f"{Path(path).name} line {i}: needs a message and a topic")
        if topics is None or d["topic"] == NONE or d["topic"] in topics:
            out.append((d["message"].strip(), d["topic"].strip()))
    return out


class TopicFinder:
    def __init__(self, encoder, labelled: list[tuple[str, str]], settings: TopicSettings = TopicSettings(),
                 cache_dir: Path | None = None):
        if not any(t != NONE for _, t in labelled):
            raise OhloraError("the topic finder needs labelled questions")
        self.encoder, self.labelled, self.settings, self.cache_dir = encoder, labelled, settings, cache_dir
        self.labels = [t for _, t in labelled]
        self._vectors: np.ndarray | None = None  # (N, D), L2-normalized

    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = encoded(self.encoder, [m for m, _ in self.labelled], self.cache_dir, "topics")
        return self._vectors

    def nearest(self, message: str) -> list[tuple[str, float]]:
        """The k nearest labelled messages' (topic, cosine), nearest first."""
        vecs = self.vectors()
        q = np.asarray(self.encoder.encode_query([message]), dtype=np.float32)[0]  # (D,)
        sims = vecs @ q  # (N,)
        top = np.argsort(-sims)[:self.settings.k]
        return [(self.labels[i], float(sims[i])) for i in top]

    def __call__(self, message: str) -> list[str]:
        """The topic the message asks ([] for none or no agreement)."""
        near = self.nearest(message)
        if not near or near[0][1] < self.settings.min_cos:
            return []
        if near[0][1] >= self.settings.sure_cos:
            return [] if near[0][0] == NONE else [near[0][0]]
        topic, votes = Counter(t for t, _ in near).most_common(1)[0]
        return [] if topic == NONE or votes < self.settings.min_votes else [topic]
