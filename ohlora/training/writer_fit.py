"""Calibrate the memory writer's store decisions on its validation split.

The writer decodes every validation message once (writer_decode.ConstrainedWriter.decide, no
thresholds), which gives its answer and two probabilities, p_store and p_key. The thresholds
(min_store_prob, min_key_prob) are then chosen on a grid: the pair with the best recall among
those meeting every target (precision, recall, false-store rate); if none meets them all, the
pair with the best F0.5 (precision weighted over recall: a wrong memory is worse than a missed
one) among those within the false-store target. Nothing here looks at the test split.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ohlora.datasets.writer import WriterRow
from ohlora.evaluation.writer import same_item
from ohlora.memory.writer_decode import ConstrainedWriter, Decision, judge

GRID = tuple(np.round(np.linspace(0, 0.95, 20), 3))


def score_decisions(writer: ConstrainedWriter, rows: list[WriterRow], decisions: list[Decision],
                    synonyms: dict[str, str], min_store: float, min_key: float) -> dict:
    p = replace(writer.policy, min_store_prob=min_store, min_key_prob=min_key)
    stored = right = due_right = false = 0
    for r, d in zip(rows, decisions):
        tag = judge(d, p, writer.fmt.nothing).tag
        if tag is None:
            continue
        stored += 1
        ok = any(same_item(tag, e, synonyms) for e in r.accepted)
        right += ok
        due_right += ok and r.due
        false += not r.due
    n_due = sum(r.due for r in rows)
    n_nothing = len(rows) - n_due
    return {"precision": right / stored if stored else 0.0, "recall": due_right / n_due if n_due else 0.0,
            "false_store_rate": false / n_nothing if n_nothing else 0.0}


def f_beta(precision: float, recall: float, beta: float = 0.5) -> float:
    if precision <= 0 or recall <= 0:
        return 0.0
    return (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall)


def fit_writer_policy(writer: ConstrainedWriter, rows: list[WriterRow], synonyms: dict[str, str],
                      min_precision: float = 0.90, min_recall: float = 0.80, max_false_store: float = 0.10,
                      log=None, out_dir=None):
    """Returns (policy with thresholds, report); with `out_dir`, every validation decision goes to
    writer_valid_decisions.csv there."""

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    decisions = [writer.decide(r.message) for r in tqdm(rows, desc="calibrate writer", file=sys.stderr)]
    if out_dir is not None:
        with (Path(out_dir) / "writer_valid_decisions.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["message", "expected", "written", "p_store", "p_key"])
            w.writerows([r.message, r.tag, d.text, round(d.p_store, 4), round(d.p_key, 4)] for r, d in zip(rows, decisions))
    best = None
    for ms in GRID:
        for mk in GRID:
            m = score_decisions(writer, rows, decisions, synonyms, float(ms), float(mk))
            within = m["false_store_rate"] <= max_false_store
            ok = within and m["precision"] >= min_precision and m["recall"] >= min_recall
            key = (ok, within, m["recall"] if ok else f_beta(m["precision"], m["recall"]), -ms, -mk)
            if best is None or key > best[0]:
                best = (key, float(ms), float(mk), m)
    _, ms, mk, m = best
    untuned = score_decisions(writer, rows, decisions, synonyms, 0.5, 0.0)
    report = {"split": "validation", "rows": len(rows),
              "targets": {"precision": min_precision, "recall": min_recall, "false_store_rate": max_false_store},
              "met": bool(best[0][0]), "chosen": {k: round(v, 4) for k, v in m.items()},
              "at_0.5_0": {k: round(v, 4) for k, v in untuned.items()}}
    log(f"writer thresholds: store >= {ms}, key >= {mk}; validation " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    return replace(writer.policy, min_store_prob=ms, min_key_prob=mk, fit=report), report
