"""Labelled CSVs (text, label[, variant]): the guard's and the expression head's datasets, read
with one rule: every bad row is named by its line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ohlora.datasets.csvfile import read_csv
from ohlora.errors import OhloraError
from ohlora.expression import EMOTIONS
from ohlora.paths import bundled
from ohlora.safety.classifier import CATEGORIES


def read_labelled(path: Path, text_col: str, label_col: str, labels: tuple[str, ...], what: str):
    """(texts, (N,) label indices, the rows) of a labelled CSV; every bad row is named by its line."""
    rows = read_csv(Path(path), (text_col, label_col), what)
    texts, ys, kept, bad = [], [], [], []
    for line, row in rows:
        text, label = (row.get(text_col) or "").strip(), (row.get(label_col) or "").strip()
        if not text or label not in labels:
            bad.append(f"line {line}: " + (f"empty {text_col}" if not text else f"unknown {label_col} {label[:30]!r}"))
            continue
        texts.append(text)
        ys.append(labels.index(label))
        kept.append(row)
    if bad:
        raise OhloraError(f"{path}: {len(bad)} bad row(s): " + "; ".join(bad[:5]) + f" ({label_col}: {', '.join(labels)})")
    if not texts:
        raise OhloraError(f"{path}: no rows")
    return texts, np.asarray(ys), kept


def guard_split(split: str) -> Path:
    """The bundled guard CSV of a split (train, valid, test)."""
    return Path(bundled("data", "guard", f"{split}.csv"))


def load_guard_csv(path: Path, categories=CATEGORIES) -> tuple[list[str], np.ndarray, list[str]]:
    """(texts, (N,) class indices, variants); every problem is one clear error with its line."""
    texts, labels, rows = read_labelled(path, "text", "category", tuple(categories), "guard CSV")
    return texts, labels, [(r.get("variant") or "plain").strip() or "plain" for r in rows]


def load_expression_csv(path: Path) -> tuple[list[str], np.ndarray]:
    texts, labels, _ = read_labelled(path, "answer", "emotion", EMOTIONS, "expression CSV")
    return texts, labels
