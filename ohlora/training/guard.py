"""`ohlora train guard`: fit the ethics guard's softmax head and calibrate its thresholds.

Recipe: embed every sentence once with the base sentence encoder (EmbeddingGemma, adapter off,
its classification prompt, the text normalized first), fit a class-weighted multinomial logistic
regression on the training split (full batch, L-BFGS, L2), then choose one threshold per category
on the validation split: the greedy search lowers whichever threshold buys the most validation
recall per normal message it lets through, until the false-positive budget on normal messages
(`max_false_positive`, 1%) is spent. The test split is never looked at here (`ohlora eval guard`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ohlora.datasets.labelled import guard_split, load_guard_csv
from ohlora.errors import OhloraError
from ohlora.evaluation.guard import metrics
from ohlora.safety.classifier import CATEGORIES, CLASSIFY_TEMPLATE, NORMAL, GuardClassifier, GuardPolicy
from ohlora.safety.heads import SoftmaxHead
from ohlora.safety.loading import classification_encoder
from ohlora.training.softmax_head import embed, fit_head


@dataclass(frozen=True)
class GuardTrainConfig:
    train_file: str | None = None
    """CSV with text,category[,variant] [default: the bundled train.csv]."""
    valid_file: str | None = None
    """Validation CSV, for the thresholds [default: bundled valid.csv]."""
    base: str = "embeddinggemma-300m"
    l2: float = 3e-5
    """L2 penalty on the head's weights (per example); chosen on the validation split from
    1e-2 .. 0 (validation accuracy 82.5% at 1e-2, 85.5% at 1e-3, 92.4% at 3e-5 and 1e-5, 89.1% at 0)."""
    max_false_positive: float = 0.01
    """Share of validation normal messages allowed to fire any category."""
    min_threshold: float = 0.2
    steps: int = 500

    def __post_init__(self):
        if not 0 <= self.max_false_positive < 1:
            raise OhloraError("max_false_positive must be in [0, 1)")
        if not 0 < self.min_threshold < 1:
            raise OhloraError("min_threshold must be in (0, 1)")
        if self.l2 < 0 or self.steps < 1:
            raise OhloraError("l2 must be >= 0 and steps >= 1")


def calibrate(probs: np.ndarray, y: np.ndarray, categories=CATEGORIES, max_false_positive: float = 0.01,
              min_threshold: float = 0.2) -> dict:
    """Per-category thresholds on validation probabilities (N, C): start where no normal message
    fires, then lower greedily while the normal messages that fire stay within the budget."""
    normal = categories.index(NORMAL)
    is_normal = y == normal
    budget = int(np.floor(max_false_positive * is_normal.sum()))
    cats = [j for j in range(len(categories)) if j != normal]
    # candidate thresholds per category: just above each normal message's probability, high to low
    levels = {}
    for j in cats:
        normal_p = np.sort(probs[is_normal, j])[::-1]
        levels[j] = [min(1.0, max(min_threshold, float(p) + 1e-6)) for p in normal_p] + [min_threshold]
    pos = {j: 0 for j in cats}  # index into levels[j]: how many normal messages it lets through

    def fp_count(th):
        return int((is_normal & (probs[:, cats] >= np.array([th[j] for j in cats])).any(axis=1)).sum())

    def recall(th, j):
        return float((probs[y == j, j] >= th[j]).mean()) if (y == j).any() else 0.0

    th = {j: levels[j][0] for j in cats}
    while True:  # each round: the one threshold move (any depth) that gains the most recall
        best = None
        for j in cats:
            for k in range(pos[j] + 1, len(levels[j])):
                trial = {**th, j: levels[j][k]}
                if fp_count(trial) > budget:
                    break  # lower still only lets more normal messages through
                gain = recall(trial, j) - recall(th, j)
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, j, k, trial)
        if best is None:
            break
        _, j, pos[j], th = best
    return {categories[j]: round(th[j], 6) for j in cats}


def train_guard(cfg: GuardTrainConfig, output: Path, encoder=None, log=print) -> dict:
    """Fit, calibrate and save a guard into `output`; returns the validation metrics."""

    train_x, train_y, _ = load_guard_csv(Path(cfg.train_file) if cfg.train_file else guard_split("train"))
    valid_x, valid_y, valid_v = load_guard_csv(Path(cfg.valid_file) if cfg.valid_file else guard_split("valid"))
    missing = [c for j, c in enumerate(CATEGORIES) if not (train_y == j).any()]
    if missing:
        raise OhloraError(f"the training split has no rows of {missing}: every category needs examples")
    if encoder is None:

        encoder = classification_encoder(cfg.base)
    policy = GuardPolicy(base=cfg.base, query_template=CLASSIFY_TEMPLATE)
    probe = GuardClassifier(encoder, SoftmaxHead(np.zeros((len(CATEGORIES), 1)), np.zeros(len(CATEGORIES))), policy)
    log(f"Embedding {len(train_x)} training and {len(valid_x)} validation sentences ...")
    xt = embed(encoder, probe.prepare(train_x), "train")  # (N, D)
    xv = embed(encoder, probe.prepare(valid_x), "valid")
    head = fit_head(xt, train_y, len(CATEGORIES), cfg.l2, cfg.steps)
    pv = head.probs(xv)
    thresholds = calibrate(pv, valid_y, CATEGORIES, cfg.max_false_positive, cfg.min_threshold)
    policy = GuardPolicy(thresholds=thresholds, base=cfg.base, query_template=CLASSIFY_TEMPLATE)
    valid = metrics(pv, valid_y, policy, valid_v)
    train = metrics(head.probs(xt), train_y, policy)
    policy = GuardPolicy(thresholds=thresholds, base=cfg.base, query_template=CLASSIFY_TEMPLATE,
                         metrics={"valid_accuracy": round(valid["accuracy"], 4),
                                  "valid_false_positive_rate": round(valid["false_positive_rate"], 4),
                                  "train_accuracy": round(train["accuracy"], 4)})
    output.mkdir(parents=True, exist_ok=True)
    head.save(output)
    policy.save(output)
    (output / "train_config.json").write_text(json.dumps(asdict(cfg), ensure_ascii=False, indent=2), encoding="utf-8")
    return {"valid": valid, "train": train, "thresholds": thresholds}
