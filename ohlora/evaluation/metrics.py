"""Pure metric functions (numpy only)."""

from __future__ import annotations

import numpy as np


def regression_metrics(pred, true) -> dict:
    """MSE, MAE and Pearson correlation of predicted vs true similarity."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    err = pred - true
    if pred.std() == 0 or true.std() == 0:
        corr = float("nan")
    else:
        corr = float(np.corrcoef(pred, true)[0, 1])
    return {"mse": float((err ** 2).mean()), "mae": float(np.abs(err).mean()), "corr": corr}


def retrieval_metrics(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    """Chat-side quality of a (messages x items) score matrix against its ground truth.

    top1_accuracy: the best item is one the message truly belongs to (truth 1.0) and passes the
    threshold. rank1_accuracy: the same with the threshold aside (how well the encoder ranks; the
    gap to top1_accuracy is right answers scored below the threshold). false_recall: with every
    truly-matching item removed, the best remaining item still passes the threshold (something
    unrelated would be recalled). Messages without any matching item count only for false_recall.
    """
    scores, truth = np.asarray(scores), np.asarray(truth)  # (M, I) each
    has_match = (truth >= 1.0).any(axis=1)
    best = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    ranked = truth[rows, best] >= 1.0
    hit = ranked & (scores[rows, best] >= threshold)
    masked = np.where(truth >= 1.0, -np.inf, scores)
    false = masked.max(axis=1) >= threshold
    return {
        "top1_accuracy": float(hit[has_match].mean()) if has_match.any() else float("nan"),
        "rank1_accuracy": float(ranked[has_match].mean()) if has_match.any() else float("nan"),
        "false_recall": float(false.mean()),
    }
