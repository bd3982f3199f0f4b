"""`ohlora train guard`: fit the ethics guard's softmax head and calibrate its thresholds.

Recipe: embed every sentence once with the base sentence encoder (EmbeddingGemma, adapter off,
its classification prompt, the text normalized first), put its character 2- and 3-grams beside
the embedding (the vocabulary: the n-grams of at least two training sentences), fit a multinomial
logistic regression on the training split (full batch, L-BFGS, one L2 penalty for the embedding's
weights and one for the n-grams'), then choose one threshold per category
on the validation split (`calibrate`: each threshold starts above every validation normal message
and goes lower only within a false-positive budget the split's size supports for at most
`max_false_positive`, 1%, of new normal messages), and one warning band per category above it
(`warn_bands`: no validation normal message reaches a block). The test split is never looked at
here (`ohlora eval guard`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ohlora.datasets.labelled import guard_split, load_guard_csv
from ohlora.errors import OhloraError
from ohlora.evaluation.guard import metrics
from ohlora.memory.heads import SoftmaxHead
from ohlora.memory.ngrams import NGRAMS_FILE, beside
from ohlora.safety.classifier import (
    CATEGORIES,
    CLASSIFY_TEMPLATE,
    DEFAULT_WARN_BAND,
    NORMAL,
    GuardClassifier,
    GuardPolicy,
)
from ohlora.safety.loading import classification_encoder
from ohlora.training.softmax_head import embed, fit_with_ngrams


@dataclass(frozen=True)
class GuardTrainConfig:
    train_file: str | None = None
    """CSV with text,category[,variant] [default: the bundled train.csv]."""
    valid_file: str | None = None
    """Validation CSV, for the thresholds [default: bundled valid.csv]."""
    base: str = "embeddinggemma-300m"
    l2: float = 1e-5
    """L2 penalty on the head's embedding weights (per example)."""
    ngram_sizes: tuple = (2, 3)
    """Character n-gram sizes read beside the embedding; () for the embedding alone."""
    ngram_min_count: int = 2
    """An n-gram joins the vocabulary when at least this many distinct training sentences have it."""
    l2_ngrams: float = 3e-5
    """L2 penalty on the n-gram weights. The pair (l2, l2_ngrams) was chosen on the validation
    split's recall at the calibrated thresholds from 3e-6 .. 1e-4 each; the embedding alone
    (ngram_sizes ()) reached 84-86% there, with n-grams 89-90%."""
    balanced: bool = False
    """Class-weighted loss; off: the training split is about half normal, half the five others."""
    max_false_positive: float = 0.01
    """Share of new normal messages allowed to fire any category (see `calibrate` for how the
    validation split bounds it)."""
    min_threshold: float = 0.2
    warn_band: float = DEFAULT_WARN_BAND
    """The narrowest warning band above a threshold (a firing below threshold + band only warns)."""
    max_block: float = 0.99
    """No block threshold above this, however high a validation normal message scored."""
    steps: int = 500

    def __post_init__(self):
        if not 0 <= self.max_false_positive < 1:
            raise OhloraError("max_false_positive must be in [0, 1)")
        if not 0 < self.min_threshold < 1:
            raise OhloraError("min_threshold must be in (0, 1)")
        if not 0 <= self.warn_band < 1 or not 0 < self.max_block <= 1:
            raise OhloraError("warn_band must be in [0, 1) and max_block in (0, 1]")
        if self.l2 < 0 or self.l2_ngrams < 0 or self.steps < 1 or self.ngram_min_count < 1:
            raise OhloraError("l2 and l2_ngrams must be >= 0, steps and ngram_min_count >= 1")


def false_positive_budget(n_normal: int, n_categories: int, max_false_positive: float) -> int:
    """How many validation normal messages the thresholds may let through, in all, for at most
    `max_false_positive` of new normal messages to fire: negative when the split cannot support
    the target at all (see `calibrate`)."""
    return int(np.floor(max_false_positive * (n_normal + 1) + 1e-9)) - n_categories


def calibrate(probs: np.ndarray, y: np.ndarray, categories=CATEGORIES, max_false_positive: float = 0.01,
              min_threshold: float = 0.2) -> dict:
    """Per-category thresholds on validation probabilities (N, C).

    The rule: a threshold that k of the n validation normal messages reach lets through about
    (k + 1) / (n + 1) of new normal messages (a new message is as likely to rank anywhere among
    the n), so with one threshold per non-normal category the share of new normal messages that
    fire something is at most sum_c (k_c + 1) / (n + 1). The thresholds keep that sum within
    `max_false_positive`: sum_c k_c <= floor(max_false_positive * (n + 1)) - (C - 1), the budget
    (`false_positive_budget`). So each category's floor is the level where the validation normal
    messages nearest to it start firing: its threshold starts just above the highest probability
    of that category among the normal messages (k_c = 0) and goes lower only while the budget
    lasts; the greedy search spends it one threshold move at a time, on the move that buys the
    most validation recall per normal message let through. With fewer than (C - 1) /
    max_false_positive normal messages (500 at 1% with five categories) there is no budget: the
    split cannot support the target, the thresholds stay above every normal message, and
    `train_guard` says so. Normal messages the classifier cannot tell apart (a disguise that
    normalizes back to its base sentence: the same probabilities) count once. No threshold goes
    below `min_threshold`.
    """
    normal = categories.index(NORMAL)
    is_normal = y == normal
    cats = [j for j in range(len(categories)) if j != normal]
    normal_probs = np.unique(probs[is_normal], axis=0) if is_normal.any() else probs[is_normal]
    budget = max(0, false_positive_budget(len(normal_probs), len(cats), max_false_positive))
    # candidate thresholds per category: just above the k-th highest normal probability, k = 0, 1, ...
    levels = {}
    for j in cats:
        normal_p = np.sort(normal_probs[:, j])[::-1]
        levels[j] = [min(1.0, max(min_threshold, float(p) + 1e-6)) for p in normal_p] + [min_threshold]

    def let_through(j, t):  # distinct validation normal messages at or above t in category j
        return int((normal_probs[:, j] >= t).sum())

    def recall(j, t):
        return float((probs[y == j, j] >= t).mean()) if (y == j).any() else 0.0

    th = {j: levels[j][0] for j in cats}
    spent = {j: let_through(j, th[j]) for j in cats}
    while True:  # each round: the one threshold move (any depth) with the most recall per normal message
        best = None
        for j in cats:
            for t in levels[j][1:]:
                if t >= th[j]:
                    continue
                cost = let_through(j, t) - spent[j]
                if sum(spent.values()) + cost > budget:
                    break  # lower still only lets more normal messages through
                gain = recall(j, t) - recall(j, th[j])
                if gain > 0:
                    key = (gain / max(cost, 1), gain)
                    if best is None or key > best[0]:
                        best = (key, j, t)
        if best is None:
            break
        _, j, th[j] = best
        spent[j] = let_through(j, th[j])
    return {categories[j]: round(th[j], 6) for j in cats}


def warn_bands(probs: np.ndarray, y: np.ndarray, thresholds: dict, categories=CATEGORIES,
               min_band: float = DEFAULT_WARN_BAND, max_block: float = 0.99) -> dict:
    """Per category, the warning band above its threshold (a firing below threshold + band only
    warns): at least `min_band`, and wide enough that no validation normal message reaches a
    block (the block threshold sits above the highest normal probability of the category), but
    never so wide that the block threshold passes `max_block` (clear abuse must still block)."""
    is_normal = y == categories.index(NORMAL)
    bands = {}
    for c, t in thresholds.items():
        j = categories.index(c)
        top = float(probs[is_normal, j].max()) + 1e-6 if is_normal.any() else 0.0
        block = min(max(t + min_band, top), max(max_block, t))
        bands[c] = round(block - t, 6)
    return bands


def train_guard(cfg: GuardTrainConfig, output: Path, encoder=None, log=print) -> dict:
    """Fit, calibrate and save a guard into `output`; returns the validation metrics."""

    train_x, train_y, _ = load_guard_csv(Path(cfg.train_file) if cfg.train_file else guard_split("train"))
    valid_x, valid_y, valid_v = load_guard_csv(Path(cfg.valid_file) if cfg.valid_file else guard_split("valid"))
    missing = [c for j, c in enumerate(CATEGORIES) if not (train_y == j).any()]
    if missing:
        raise OhloraError(f"the training split has no rows of {missing}: every category needs examples")
    if encoder is None:

        encoder = classification_encoder(cfg.base)
    shape = dict(base=cfg.base, query_template=CLASSIFY_TEMPLATE, ngram_sizes=tuple(cfg.ngram_sizes))
    probe = GuardClassifier(encoder, SoftmaxHead(np.zeros((len(CATEGORIES), 1)), np.zeros(len(CATEGORIES))),
                            GuardPolicy(base=cfg.base, query_template=CLASSIFY_TEMPLATE))
    train_p, valid_p = probe.prepare(train_x), probe.prepare(valid_x)
    log(f"Embedding {len(train_x)} training and {len(valid_x)} validation sentences ...")
    xt = embed(encoder, train_p, "train")  # (N, D)
    xv = embed(encoder, valid_p, "valid")
    head, ngrams, xt = fit_with_ngrams(xt, train_p, train_y, len(CATEGORIES), tuple(cfg.ngram_sizes),
                                       cfg.ngram_min_count, cfg.l2, cfg.l2_ngrams, cfg.steps, cfg.balanced)
    if ngrams is not None:
        log(f"{len(ngrams)} character n-grams beside the embedding")
    xv = beside(xv, valid_p, ngrams)  # (N, D + V), as xt
    pv = head.probs(xv)
    normal_rows = pv[valid_y == CATEGORIES.index(NORMAL)]
    n_normal = len(np.unique(normal_rows, axis=0)) if len(normal_rows) else 0  # distinct, as calibrate counts
    budget = false_positive_budget(n_normal, len(CATEGORIES) - 1, cfg.max_false_positive)
    if budget < 0:
        log(f"warning: {n_normal} validation normal messages cannot support {cfg.max_false_positive:.1%} false "
            f"positives with {len(CATEGORIES) - 1} thresholds (that needs "
            f"{int(np.ceil((len(CATEGORIES) - 1) / max(cfg.max_false_positive, 1e-9))) - 1}): every threshold "
            "stays above every validation normal message")
    thresholds = calibrate(pv, valid_y, CATEGORIES, cfg.max_false_positive, cfg.min_threshold)
    bands = warn_bands(pv, valid_y, thresholds, CATEGORIES, cfg.warn_band, cfg.max_block)
    policy = GuardPolicy(thresholds=thresholds, warn_band=bands, **shape)
    valid = metrics(pv, valid_y, policy, valid_v)
    train = metrics(head.probs(xt), train_y, policy)
    policy = GuardPolicy(thresholds=thresholds, warn_band=bands, **shape,
                         metrics={"valid_accuracy": round(valid["accuracy"], 4),
                                  "valid_false_positive_rate": round(valid["false_positive_rate"], 4),
                                  "valid_normal_messages": n_normal, "false_positive_budget": max(budget, 0),
                                  "train_accuracy": round(train["accuracy"], 4)})
    output.mkdir(parents=True, exist_ok=True)
    head.save(output)
    policy.save(output)
    if ngrams is not None:
        ngrams.save(output)
    elif (output / NGRAMS_FILE).exists():
        (output / NGRAMS_FILE).unlink()  # an older guard's vocabulary, not this head's
    config = {**asdict(cfg), "ngram_sizes": list(cfg.ngram_sizes)}
    (output / "train_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    return {"valid": valid, "train": train, "thresholds": thresholds, "warn_band": bands}
