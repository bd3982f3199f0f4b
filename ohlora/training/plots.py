"""Plots written by training and evaluation (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_loss(log_csv: Path, out_png: Path, title: str = "") -> Path | None:
    """Training loss per step and validation loss per epoch from train_log.csv."""
    # lazy: matplotlib loads only when this runs
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib loads only when this runs
    import matplotlib.pyplot as plt

    if not Path(log_csv).exists():
        return None
    train, valid = [], []
    with Path(log_csv).open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["loss"]:
                train.append((float(row["epoch"]), float(row["loss"])))
            if row["eval_loss"]:
                valid.append((float(row["epoch"]), float(row["eval_loss"])))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1)
    if valid:
        ax.plot(*zip(*valid), "o-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
