"""Pick the stored memory item most related to a user message: two stages, item vectors cached.

Stage 1: the bi-encoder's cosine of the message with every stored item (vectors cached in the
database per encoder). Stage 2 (`recall.Decider`): the recall policy saved beside the memory
adapter scores stage 1's shortlist (a calibrated probability) or, for the plain cosine policy,
keeps the cosine; a policy with reference features also gets the cosines of a reference encoder
(the memory adapter's base with the adapter off), whose item vectors are cached the same way. The
best item is recalled if its score reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ohlora.errors import OhloraError
from ohlora.memory.encoder import MemoryEncoder
from ohlora.memory.recall import Decider, RecallPolicy
from ohlora.store.memories import MemoryItem, MemoryStore

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
                 decider: Decider | None = None, reference: MemoryEncoder | None = None):
        self.encoder = encoder
        self.store = store
        self.decider = decider or Decider(RecallPolicy())
        self.reference = reference
        if self.decider.needs_reference and reference is None:
            raise OhloraError("the recall policy needs its reference encoder (the memory adapter's base)")
        self.threshold = self.decider.policy.threshold if threshold is None else threshold
        """On the decision score: the policy's own (chosen on the validation split) unless given."""
        lo = 0.0 if self.calibrated else -1.0  # a probability, or a cosine
        if threshold is not None and not lo <= threshold <= 1:
            what = "calibrated probability" if self.calibrated else "cosine"
            raise OhloraError(f"memory_threshold must be in [{lo:g}, 1] for this encoder's {what} "
                              f"(or null: its policy's own, {self.decider.policy.threshold:g})")
        self._cache: dict[tuple[str, str], tuple] = {}  # (user, encoder id) -> (store version, items, (N, D))

    @property
    def calibrated(self) -> bool:
        return self.decider.policy.method != "cosine"

    def item_vectors(self, user: str, encoder: MemoryEncoder | None = None):
        """The user's items and their (N, D) vectors: from memory while the store is unchanged,
        else from the database cache, encoding only items that have no vector for this encoder."""
        encoder = encoder or self.encoder
        version = self.store.version()
        hit = self._cache.get((user, encoder.id))
        if hit and hit[0] == version:
            return hit[1], hit[2]
        have, matrix, missing = self.store.embeddings(user, encoder.id)
        if missing:
            vecs = encoder.encode([i.text for i in missing])  # (M, D)
            self.store.put_embeddings(encoder.id, missing, vecs)
            have = have + missing
            matrix = vecs if matrix is None else np.concatenate([matrix, vecs])
        if have:
            order = np.argsort([i.id for i in have], kind="stable")  # one item order for every encoder
            have, matrix = [have[i] for i in order], matrix[order]
        self._cache[(user, encoder.id)] = (self.store.version(), have, matrix)
        return have, matrix

    def scores(self, user: str, message: str) -> list[Recall]:
        """Every stored item of the user with its decision score (and cosine), best first;
        items outside stage 1's shortlist come last, by cosine."""
        have, matrix = self.item_vectors(user)
        if not have:
            return []
        q = self.encoder.encode_query([message])[0]  # (D,)
        cos = matrix @ q  # (N,), rows are normalized
        ref_cos = ref_q = None
        if self.decider.needs_reference:
            _, ref_matrix = self.item_vectors(user, self.reference)  # the same items, the same order
            ref_q = self.reference.encode_query([message])[0]  # (D',)
            ref_cos = ref_matrix @ ref_q  # (N,)
        final = self.decider.score(cos, [i.key for i in have], q, ref_cos, ref_q)  # (N,)
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
