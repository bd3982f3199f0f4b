"""`ohlora train recall`: fit the second recall stage of a memory encoder on the validation split.

1. The bank: the encoder's vectors of every training combination message, with its key.
2. For every validation message, stage 1's shortlist among all validation items, and each
   candidate's features (memory/recall.py); label 1 where the item has the message's key.
3. A logistic regression on those features (Newton's method, a little L2) is the calibration:
   its output is P(this candidate is the memory the message is about).
4. The threshold on that probability: the one with the best top-1 accuracy on the validation split
   among those whose false recall stays within the target. The bank's softmax temperature is
   chosen the same way, from a few values.
Nothing here looks at the test split.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ohlora.datasets.combinations import Comb, load_combs
from ohlora.datasets.writer import read_writer_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.metrics import retrieval_metrics
from ohlora.evaluation.recall import split_scores, substores
from ohlora.memory.encoder import MemoryEncoder
from ohlora.memory.loading import (
    adapter_fingerprint,
    load_adapter_encoder,
    read_meta,
    reference_encoder,
)
from ohlora.memory.recall import (
    BANK_FILE,
    TOPIC_FEATURES,
    TOPIC_FILE,
    Decider,
    KeyBank,
    RecallPolicy,
    TopicHead,
    candidate_features,
    canonical_key,
    sigmoid,
)
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import validate_tag
from ohlora.paths import bundled
from ohlora.training.softmax_head import embed, fit_head

DEFAULT_FEATURES = ("cos", "knn", "known", "gap", "cos_known", "knn_known")
REFERENCE_FEATURES = ("cos_ref", "gap_ref")
"""Added when a reference encoder is given (the memory adapter's base with the adapter off)."""
TOPIC_L2 = (1e-3, 1e-4, 1e-5)
"""L2 penalties the topic head is tried with; the best key accuracy on the validation messages wins."""
TEMPERATURES = (0.02, 0.05, 0.1)
STORE_SIZE = 90
"""Items per store when choosing the threshold: the bundled test split's size (90 distinct items)."""
FIT_STORE_SIZES = (1, 3, 10, 30, 90)
"""Store sizes the logistic model is fit on: users with a few memories as well as many."""
MIN_VALID_LINES = 10
"""Fewer validation lines than this cannot fit the decision."""
WITHOUT_RIGHT = 0.5
"""Share of the fit's stores that hold nothing the message is about: without them the model never
sees a lone unrelated memory, and a user's only item would look like a match."""


def check_valid_combs(valid: list[Comb], source: str = "the validation split", hint: str = "") -> None:
    if len(valid) < MIN_VALID_LINES:
        raise OhloraError(f"{source} has {len(valid)} lines: at least {MIN_VALID_LINES} are needed to fit "
                          f"recall{hint}")


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method: (coef (F,), intercept). x: (N, F), y: (N,) in {0, 1}."""
    X = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])  # (N, F+1)
    w = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the intercept
    for _ in range(iters):
        p = sigmoid(X @ w)
        grad = X.T @ (p - y) + reg @ w
        hess = (X * (p * (1 - p))[:, None]).T @ X + reg
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def choose_threshold(scores: np.ndarray, truth: np.ndarray, target_false_recall: float) -> tuple[float, dict]:
    """The threshold with the best top-1 accuracy whose false recall is <= the target (ties: the
    higher threshold); if none reaches the target, the one with the lowest false recall."""
    finite = scores[np.isfinite(scores)]
    grid = np.unique(np.concatenate([np.quantile(finite, np.linspace(0, 1, 401)), np.linspace(0, 1, 101)]))
    best, best_key = None, None
    for t in grid:
        m = retrieval_metrics(scores, truth, float(t))
        ok = m["false_recall"] <= target_false_recall
        key = (ok, m["top1_accuracy"] if ok else -m["false_recall"], t)
        if best_key is None or key > best_key:
            best, best_key = (float(t), m), key
    return best


def fit_topic(reference: MemoryEncoder, rows: list[tuple[str, str]], valid_q: np.ndarray, valid_keys: list[str],
              synonyms: dict[str, str], log=None) -> tuple[TopicHead, dict]:
    """The recall topic head: softmax over the canonical keys of `rows` (message, key) on the
    reference encoder's message vectors, L2 from TOPIC_L2 by accuracy on the validation messages
    (`valid_q` (M, D'), their keys) whose key the head knows. Returns (head, report)."""

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    def canon(k: str) -> str:
        return canonical_key(k, synonyms)

    keys = sorted({canon(k) for _, k in rows})
    index = {k: i for i, k in enumerate(keys)}
    x = embed(reference, [m for m, _ in rows], "topic messages")  # (N, D')
    y = np.array([index[canon(k)] for _, k in rows])
    known = np.array([canon(k) in index for k in valid_keys])
    yv = np.array([index.get(canon(k), -1) for k in valid_keys])
    best = None
    for l2 in TOPIC_L2:
        head = fit_head(x, y, len(keys), l2, balanced=False)
        acc = float((head.probs(valid_q[known]).argmax(axis=1) == yv[known]).mean()) if known.any() else 0.0
        log(f"  topic head l2 {l2:g}: validation key accuracy {acc:.3f} ({int(known.sum())} messages of known keys)")
        if best is None or acc > best[0]:
            best = (acc, l2, head)
    acc, l2, head = best
    return TopicHead(head, keys, synonyms), {"messages": len(rows), "keys": len(keys), "l2": l2,
                                             "valid_key_accuracy": round(acc, 4)}


def topic_rows(train: list[Comb], writer_rows=()) -> list[tuple[str, str]]:
    """(message, key) for the topic head: every training combination line, and the writer's
    training messages that state a fact (a statement about a key is about it)."""
    out = [(c.message, c.key) for c in train]
    for r in writer_rows:
        if r.due:
            out.append((r.message, validate_tag(r.tag).tag.key))
    return out


def build_bank(encoder: MemoryEncoder, train: list[Comb], synonyms: dict[str, str]) -> KeyBank:
    return KeyBank(encoder.encode_query([c.message for c in train]), [c.key for c in train], synonyms)


def fit_recall(encoder: MemoryEncoder, train: list[Comb], valid: list[Comb], synonyms: dict[str, str],
               target_false_recall: float = 0.10, shortlist: int = 10,
               features: tuple[str, ...] = DEFAULT_FEATURES, bank: KeyBank | None = None,
               store_size: int = STORE_SIZE, repeats: int = 5, log=None,
               reference: MemoryEncoder | None = None,
               topic: list[tuple[str, str]] | None = None) -> tuple[RecallPolicy, KeyBank, dict]:
    """Fit the calibrated policy on `valid`; returns (policy, bank, report with validation metrics
    of the cosine baseline and of the fitted policy).

    Each validation message is scored against stores of its own item and random others
    (`repeats` draws): the logistic model is fit on stores of FIT_STORE_SIZES items (a user with
    one memory as well as one with ninety; half of them hold nothing of the message's key, so
    that "nothing stored is about this" is seen too), and the threshold is chosen on stores of
    `store_size` items, since how likely a wrong item is to pass a threshold grows with the number
    of stored items: it is chosen for stores of the size it is tested on. With a `reference`
    encoder its cosine and gap join the features (`reference: base` in the policy); with `topic`
    rows (message, key) too, a topic head is fit on them (`fit_topic`) and its features join
    (the head is `policy_topic` in the report's objects: returned as the bank's `topic`).
    """

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    check_valid_combs(valid)
    t0 = time.perf_counter()
    if bank is None:
        log(f"encoding the bank: {len(train)} training messages ...")
        bank = build_bank(encoder, train, synonyms)
    if reference is not None:
        features = tuple(features) + tuple(f for f in REFERENCE_FEATURES if f not in features)
    base = split_scores(encoder, Decider(RecallPolicy()), valid, synonyms, reference)  # cosines, (M, I)
    head = None
    if topic and reference is not None:
        log(f"fitting the topic head on {len(topic)} messages ...")
        head, topic_report = fit_topic(reference, topic, base.ref_q, base.message_keys, synonyms, log)
        features = tuple(features) + tuple(f for f in TOPIC_FEATURES if f not in features)

    def draw(size: int, seed: int, without_right: float = 0.0):
        stores = substores(base, size, repeats, seed, without_right)  # (R*M,) rows of item indices
        msg = [r % len(valid) for r in range(len(stores))]
        ref = [base.ref_cos[m, st] for m, st in zip(msg, stores)] if reference is not None else [None] * len(msg)
        # each store's own items, in the store's order; the message's reference vector is base.ref_q[m]
        return (msg, [base.truth[m, st] for m, st in zip(msg, stores)], [base.cos[m, st] for m, st in zip(msg, stores)],
                [[base.item_keys[i] for i in st] for st in stores], ref)

    def ref_q(m: int):
        return base.ref_q[m] if base.ref_q is not None else None

    msg, truth, cos, keys, ref = draw(store_size, 0)  # for the threshold
    truth = np.stack(truth)  # (R*M, S)
    # for the coefficients: stores of every size, half of them without any item the message is about
    fit_draws = [draw(n, 1 + i, WITHOUT_RIGHT) for i, n in enumerate(FIT_STORE_SIZES)]
    cos_t, cos_m = choose_threshold(np.stack(cos), truth, target_false_recall)
    report = {"valid_lines": len(valid), "bank_messages": len(train), "target_false_recall": target_false_recall,
              "store_size": int(truth.shape[1]), "cosine": {"threshold": cos_t, **cos_m}}
    best = None
    for temperature in TEMPERATURES:
        probe = RecallPolicy("calibrated", 0.5, shortlist, features, (0.0,) * len(features), 0.0,
                             temperature=temperature, reference="base" if reference is not None else "")
        xs, ys = [], []
        for f_msg, f_truth, f_cos, f_keys, f_ref in fit_draws:
            for r, m in enumerate(f_msg):
                short = np.argsort(-f_cos[r], kind="stable")[:shortlist]
                xs.append(candidate_features(f_cos[r], f_keys[r], short, base.q[m], bank, probe, features, f_ref[r],
                                             ref_q(m), head))
                ys.append(f_truth[r][short])
        coef, intercept = fit_logistic(np.concatenate(xs), np.concatenate(ys))
        policy = replace(probe, coef=tuple(float(c) for c in coef), intercept=intercept)
        decider = Decider(policy, bank, head)
        final = np.stack([decider.score(cos[r], keys[r], base.q[m], ref[r], ref_q(m)) for r, m in enumerate(msg)])
        t, metrics = choose_threshold(final, truth, target_false_recall)
        key = (metrics["false_recall"] <= target_false_recall, metrics["top1_accuracy"], -metrics["false_recall"])
        log(f"  temperature {temperature}: threshold {t:.3f}, valid top-1 {metrics['top1_accuracy']:.3f}, "
            f"rank-1 {metrics['rank1_accuracy']:.3f}, false recall {metrics['false_recall']:.3f}")
        if best is None or key > best[0]:
            best = (key, replace(policy, threshold=t), metrics)
    _, policy, metrics = best
    report["calibrated"] = {"threshold": policy.threshold, "temperature": policy.temperature, **metrics}
    if head is not None:
        report["topic"] = topic_report
    bank.topic = head
    report["seconds"] = round(time.perf_counter() - t0, 1)
    policy = replace(policy, fit={"split": "validation", **{k: _round(v) for k, v in report.items()}})
    return policy, bank, report


def _round(v):
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def save_recall(directory: Path, policy: RecallPolicy, bank: KeyBank) -> None:
    """The policy, its bank and (when the policy reads one) its topic head, beside the adapter;
    a topic head of an earlier fit that this policy does not read is removed."""

    policy.save(directory)
    fingerprint = adapter_fingerprint(directory)
    bank.save(directory, fingerprint)
    topic = getattr(bank, "topic", None)
    if policy.needs_topic and topic is not None:
        topic.save(directory, fingerprint)
    elif (Path(directory) / TOPIC_FILE).is_file():
        (Path(directory) / TOPIC_FILE).unlink()


def reference_for(adapter_dir: Path, encoder: MemoryEncoder) -> MemoryEncoder | None:
    """The reference encoder a memory adapter's policy is fit with: its base with the adapter off,
    for a sentence encoder (EmbeddingGemma: a retrieval model before it was fine-tuned); none for a
    causal LM, whose untrained pooled states give every pair a cosine of 0.8-0.95."""

    return reference_encoder(encoder) if read_meta(adapter_dir).get("kind") == "encoder" else None


def saved_bank(directory: Path, train: list[Comb], synonyms: dict[str, str]) -> KeyBank | None:
    """The bank saved beside an adapter if it was built from exactly these training lines' keys."""

    if not (Path(directory) / BANK_FILE).is_file():
        return None
    bank = KeyBank.load(directory, synonyms)
    fresh = bank.fingerprint == adapter_fingerprint(directory) and bank.raw_keys == [c.key for c in train]
    return bank if fresh else None


def default_topic_rows(train: list[Comb], writer_file: Path | None = None) -> list[tuple[str, str]]:
    """The topic head's rows: the training combinations and the writer's training messages with a
    fact (`writer_file`, the bundled writer/train.csv by default; never its test split)."""
    path = Path(writer_file) if writer_file is not None else bundled("data", "writer", "train.csv")
    return topic_rows(train, read_writer_rows(path))


def refit_recall(encoder_dir: Path, train_combs: Path | None = None, valid_combs: Path | None = None,
                 target_false_recall: float = 0.10, shortlist: int = 10, topic: bool = False) -> dict:
    """`ohlora train recall`: fit and save the second stage for an existing memory adapter; with
    `topic` (and a reference encoder) the topic head too."""

    encoder_dir = Path(encoder_dir)
    try:
        probe = encoder_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OhloraError(f"{encoder_dir} is not writable ({e.strerror}): copy the adapter and fit the copy") from e
    synonyms = load_synonyms()
    train = load_combs(Path(train_combs or bundled("data", "memory", "train_combs.txt")))
    valid = load_combs(Path(valid_combs or bundled("data", "memory", "valid_combs.txt")))
    encoder = load_adapter_encoder(encoder_dir)
    bank = saved_bank(encoder_dir, train, synonyms)  # same adapter, same lines: its vectors are the same
    reference = reference_for(encoder_dir, encoder)
    rows = default_topic_rows(train) if topic and reference is not None else None
    policy, bank, report = fit_recall(encoder, train, valid, synonyms, target_false_recall, shortlist, bank=bank,
                                      reference=reference, topic=rows)
    save_recall(encoder_dir, policy, bank)
    return report
