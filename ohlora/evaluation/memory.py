"""`ohlora eval memory`: how well a memory encoder's cosine predicts relatedness.

Returns a dict of metrics (sentence-transformers' evaluator habit): mse, mae, corr on every test
pair, and what matters in chat: top1_accuracy and false_recall (see metrics.retrieval_metrics).
Writes a CSV of every pair and a predicted-vs-true scatter plot.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ohlora.datasets.combinations import Pair
from ohlora.evaluation.metrics import regression_metrics, retrieval_metrics
from ohlora.memory.encoder import MemoryEncoder
from ohlora.paths import ensure_dir


def evaluate_memory(encoder: MemoryEncoder, pairs: list[Pair], threshold: float = 0.6,
                    out_dir: Path | None = None, title: str = "") -> dict:
    memories = sorted({p.memory for p in pairs})
    messages = sorted({p.message for p in pairs})
    mi = {t: i for i, t in enumerate(memories)}
    qi = {t: i for i, t in enumerate(messages)}
    sims = encoder.encode_query(messages) @ encoder.encode(memories).T  # (M, I) cosines
    truth = np.zeros_like(sims)
    for p in pairs:
        truth[qi[p.message], mi[p.memory]] = max(truth[qi[p.message], mi[p.memory]], p.score)
    pred = np.array([sims[qi[p.message], mi[p.memory]] for p in pairs])
    true = np.array([p.score for p in pairs])
    metrics = {**regression_metrics(pred, true), **retrieval_metrics(sims, truth, threshold),
               "n_pairs": len(pairs), "threshold": threshold}
    if out_dir is not None:
        out_dir = ensure_dir(Path(out_dir))
        with (out_dir / "memory_pairs.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["memory", "prompt", "predicted", "truth", "abs_error"])
            for p, s in zip(pairs, pred):
                w.writerow([p.memory, p.message, f"{s:.4f}", f"{p.score:.4f}", f"{abs(s - p.score):.4f}"])
        scatter(pred, true, out_dir / "memory_scatter.png", metrics, title)
    return metrics


def scatter(pred, true, path: Path, metrics: dict, title: str = "") -> Path:
    # lazy: matplotlib loads only when this runs
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib loads only when this runs
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    jitter = np.random.default_rng(0).uniform(-0.015, 0.015, len(true))
    ax.scatter(true + jitter, pred, s=4, alpha=0.25)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.axhline(metrics.get("threshold", 0.6), color="r", lw=0.8, ls=":")
    ax.set_xlabel("true similarity (key IoU)")
    ax.set_ylabel("predicted cosine")
    ax.set_title(f"{title}\nMSE {metrics['mse']:.4f}  MAE {metrics['mae']:.4f}  corr {metrics['corr']:.4f}")
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
