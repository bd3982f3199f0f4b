"""Recall as the chat does it, on combination lines: every message against every item of a split.

`split_scores` runs both stages for every message of a split, with all of the split's distinct
items as that message's stored memories; `recall_report` turns the (messages x items) matrices
into what matters in chat (sentence-transformers' evaluator habit: a dict of metrics):

  top1_accuracy   the decision recalls an item of the message's key (synonyms count as one)
  rank1_accuracy  the best-scored item has the right key, whatever the threshold
  recall_at_k     stage 1's shortlist of k items (by cosine) holds an item of the right key
  false_recall    with every item of the right key removed, something is still recalled

each also over the messages whose key never occurs in training ("heldout") and the others ("seen").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ohlora.datasets.combinations import Comb, key_similarity
from ohlora.evaluation.metrics import retrieval_metrics
from ohlora.memory.encoder import MemoryEncoder
from ohlora.memory.recall import Decider

RECALL_KS = (1, 3, 5, 10)


@dataclass
class SplitScores:
    messages: list[str]
    message_keys: list[str]
    message_values: list[str]
    items: list[str]
    item_keys: list[str]
    cos: np.ndarray  # (M, I) stage 1
    final: np.ndarray  # (M, I) stage 2's decision scores (-inf outside the shortlist)
    truth: np.ndarray  # (M, I) 1.0 where the item has the message's key
    q: np.ndarray  # (M, D) message vectors
    ref_cos: np.ndarray | None = None  # (M, I) the reference encoder's cosines, if the policy uses them
    ref_q: np.ndarray | None = None  # (M, D') the reference encoder's message vectors


def split_scores(encoder: MemoryEncoder, decider: Decider, combs: list[Comb], synonyms: dict[str, str],
                 reference: MemoryEncoder | None = None) -> SplitScores:
    """Both stages for every message of `combs` against all of its distinct items; `reference`:
    the reference encoder (its cosines are kept whenever it is given, used if the policy asks)."""
    items = sorted({c.memory for c in combs})
    item_keys = [next(c.key for c in combs if c.memory == t) for t in items]
    q = encoder.encode_query([c.message for c in combs])  # (M, D)
    cos = q @ encoder.encode(items).T  # (M, I)
    ref_q = ref_cos = None
    if reference is not None:
        ref_q = reference.encode_query([c.message for c in combs])  # (M, D')
        ref_cos = ref_q @ reference.encode(items).T  # (M, I)
    final = np.stack([decider.score(cos[m], item_keys, q[m], None if ref_cos is None else ref_cos[m],
                                    None if ref_q is None else ref_q[m]) for m in range(len(combs))])
    truth = np.array([[1.0 if key_similarity(c.key, k, synonyms) >= 1.0 else 0.0 for k in item_keys] for c in combs])
    return SplitScores([c.message for c in combs], [c.key for c in combs], [c.value for c in combs], items, item_keys,
                       cos, final, truth, q, ref_cos, ref_q)


def substores(s: SplitScores, size: int, repeats: int, seed: int = 0, without_right: float = 0.0) -> list[np.ndarray]:
    """Stores of `size` items per message, as a user would have: the message's own line's item
    (the memory it was written for) plus random others of the split, `repeats` draws per message.
    A share `without_right` of the stores hold no item of the message's key at all (a message
    that nothing stored is about). Returns R*M rows of item indices; a split with at most `size`
    items (and no store without the right items) gives the whole split."""
    n = len(s.items)
    if n <= size and not without_right:
        return [np.arange(n) for _ in range(len(s.messages))]
    rng = np.random.default_rng(seed)
    own = [s.items.index(f"[{k}: {v}]") if f"[{k}: {v}]" in s.items else None
           for k, v in zip(s.message_keys, s.message_values)]
    rows = []
    for _ in range(repeats):
        for m in range(len(s.messages)):
            if rng.random() < without_right:
                pool = np.flatnonzero(s.truth[m] < 1.0)  # every item of another key
                rows.append(rng.choice(pool, size=min(size, len(pool)), replace=False))
                continue
            others = rng.choice(n, size=min(size, n), replace=False)
            if own[m] is not None and own[m] not in others:
                others[0] = own[m]
            rows.append(others)
    return rows


def recall_at_k(cos: np.ndarray, truth: np.ndarray, k: int) -> float:
    top = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    has = truth.max(axis=1) >= 1.0
    hit = np.take_along_axis(truth, top, axis=1).max(axis=1) >= 1.0
    return float(hit[has].mean()) if has.any() else float("nan")


def recall_report(s: SplitScores, threshold: float, train_keys: set[str] | None = None,
                  synonyms: dict[str, str] | None = None) -> dict:
    """Metrics of the decision at `threshold` (on s.final), over all messages and held-out/seen."""
    out = dict(retrieval_metrics(s.final, s.truth, threshold))
    for k in RECALL_KS:
        out[f"recall_at_{k}"] = recall_at_k(s.cos, s.truth, k)
    out["n_messages"] = len(s.messages)
    if train_keys is not None:
        canon = (lambda k: (synonyms or {}).get(k, k))
        seen = {canon(k) for k in train_keys}
        held = np.array([canon(k) not in seen for k in s.message_keys])
        for name, rows in (("heldout", held), ("seen", ~held)):
            if rows.any():
                part = retrieval_metrics(s.final[rows], s.truth[rows], threshold)
                out[f"top1_{name}"] = part["top1_accuracy"]
                out[f"rank1_{name}"] = part["rank1_accuracy"]
                out[f"false_recall_{name}"] = part["false_recall"]
                out[f"n_{name}"] = int(rows.sum())
    return out


def decision_latency(encoder: MemoryEncoder, decider: Decider, s: SplitScores, sizes=(10, 50),
                     repeats: int = 20, reference: MemoryEncoder | None = None) -> dict:
    """Milliseconds per message, items' vectors cached (as in chat): encoding the message (with
    the reference encoder too when the policy uses one), and the decision itself (stage 1
    cosines + stage 2) for a user with n stored items."""
    rng = np.random.default_rng(0)
    use_ref = decider.needs_reference and reference is not None
    vecs = encoder.encode(s.items)  # (I, D)
    ref_vecs = reference.encode(s.items) if use_ref else None
    out = {}
    msgs = s.messages[:repeats]
    t = time.perf_counter()
    for m in msgs:
        encoder.encode_query([m])
        if use_ref:
            reference.encode_query([m])
    out["encode_query_ms"] = 1000 * (time.perf_counter() - t) / len(msgs)
    for n in sizes:
        pick = rng.choice(len(s.items), size=min(n, len(s.items)), replace=False)
        mat, keys = vecs[pick], [s.item_keys[i] for i in pick]
        t = time.perf_counter()
        for i in range(len(msgs)):
            ref = ref_vecs[pick] @ s.ref_q[i] if use_ref else None
            decider.score(mat @ s.q[i], keys, s.q[i], ref, s.ref_q[i] if use_ref else None)
        out[f"decision_ms_{n}"] = 1000 * (time.perf_counter() - t) / len(msgs)
    return out
