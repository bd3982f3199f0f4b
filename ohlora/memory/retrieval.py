"""Pick the stored memory item most related to a user message: two stages, item vectors cached.

Stage 1: the bi-encoder's cosine of the message with every stored item (vectors cached in the
database per encoder). Stage 2 (`recall.Decider`): the recall policy saved beside the memory
adapter scores stage 1's shortlist (a calibrated probability) or, for the plain cosine policy,
keeps the cosine. The best item is recalled if its score reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ohlora.memory.encoder import MemoryEncoder
from ohlora.memory.recall import Decider, RecallPolicy
from ohlora.memory.store import MemoryItem, MemoryStore

DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class Recall:
    item: MemoryItem
    score: float
    """The decision score: the calibrated probability, or the cosine under the cosine policy."""
    cosine: float | None = None
    """Stage 1's cosine (None when it is the score itself)."""

    def as_dict(self) -> dict:
        out = {"text": self.item.text, "key": self.item.key, "value": self.item.value,
               "id": self.item.id, "score": round(self.score, 4)}
        if self.cosine is not None:
            out["cosine"] = round(self.cosine, 4)
        return out


class Retriever:
    def __init__(self, encoder: MemoryEncoder, store: MemoryStore, threshold: float | None = None,
                 decider: Decider | None = None):
        self.encoder = encoder
        self.store = store
        self.decider = decider or Decider(RecallPolicy())
        self.threshold = self.decider.policy.threshold if threshold is None else threshold
        """On the decision score: the policy's own (chosen on the validation split) unless given."""
        self._cache: dict[str, tuple] = {}  # user -> (store version, items, (N, D) matrix)

    @property
    def calibrated(self) -> bool:
        return self.decider.policy.method != "cosine"

    def item_vectors(self, user: str):
        """The user's items and their (N, D) vectors: from memory while the store is unchanged,
        else from the database cache, encoding only items that have no vector for this encoder."""
        version = self.store.version()
        hit = self._cache.get(user)
        if hit and hit[0] == version:
            return hit[1], hit[2]
        have, matrix, missing = self.store.embeddings(user, self.encoder.id)
        if missing:
            vecs = self.encoder.encode([i.text for i in missing])  # (M, D)
            self.store.put_embeddings(self.encoder.id, missing, vecs)
            have = have + missing
            matrix = vecs if matrix is None else np.concatenate([matrix, vecs])
        self._cache[user] = (self.store.version(), have, matrix)
        return have, matrix

    def scores(self, user: str, message: str) -> list[Recall]:
        """Every stored item of the user with its decision score (and cosine), best first;
        items outside stage 1's shortlist come last, by cosine."""
        have, matrix = self.item_vectors(user)
        if not have:
            return []
        q = self.encoder.encode_query([message])[0]  # (D,)
        cos = matrix @ q  # (N,), rows are normalized
        final = self.decider.score(cos, [i.key for i in have], q)  # (N,)
        order = np.lexsort((-cos, -final))  # by decision score, then cosine
        calibrated = self.calibrated
        return [Recall(have[i], float(final[i]) if np.isfinite(final[i]) else 0.0,
                       float(cos[i]) if calibrated else None) for i in order]

    def best(self, user: str, message: str) -> Recall | None:
        """The single best item if its score reaches the threshold, else None."""
        ranked = self.scores(user, message)
        if ranked and ranked[0].score >= self.threshold:
            return ranked[0]
        return None
