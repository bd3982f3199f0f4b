"""Pick the stored memory item most related to a user message, using cached item embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ohlora.memory.encoder import MemoryEncoder
from ohlora.memory.store import MemoryItem, MemoryStore

DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class Recall:
    item: MemoryItem
    score: float

    def as_dict(self) -> dict:
        return {"text": self.item.text, "key": self.item.key, "value": self.item.value,
                "id": self.item.id, "score": round(self.score, 4)}


class Retriever:
    def __init__(self, encoder: MemoryEncoder, store: MemoryStore, threshold: float = DEFAULT_THRESHOLD):
        self.encoder = encoder
        self.store = store
        self.threshold = threshold
        self._cache: dict[str, tuple] = {}  # user -> (store version, items, (N, D) matrix)

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
        """Every stored item of the user with its cosine to the message, best first."""
        have, matrix = self.item_vectors(user)
        if not have:
            return []
        q = self.encoder.encode_query([message])[0]  # (D,)
        sims = matrix @ q  # (N,), rows are normalized
        order = np.argsort(-sims, kind="stable")
        return [Recall(have[i], float(sims[i])) for i in order]

    def best(self, user: str, message: str) -> Recall | None:
        """The single best item if its score reaches the threshold, else None."""
        ranked = self.scores(user, message)
        if ranked and ranked[0].score >= self.threshold:
            return ranked[0]
        return None
