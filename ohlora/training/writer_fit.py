"""Calibrate the memory writer's store decisions on its validation split.

The writer decodes every validation message once (writer_decode.ConstrainedWriter.decide, no
thresholds), which gives its answer and two probabilities, p_store and p_key. The thresholds
(min_store_prob, min_key_prob) are then chosen on a grid: the pair with the best recall whose
precision and false-store rate meet the targets; if no pair meets them, the pair with the best
precision x recall x (1 - false-store rate). Nothing here looks at the test split.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from ohlora.evaluation.writer import same_item
from ohlora.memory.writer_decode import ConstrainedWriter, Decision
from ohlora.training.writer_data import WriterRow

GRID = tuple(np.round(np.linspace(0, 0.95, 20), 3))


def score_decisions(writer: ConstrainedWriter, rows: list[WriterRow], decisions: list[Decision],
                    synonyms: dict[str, str], min_store: float, min_key: float) -> dict:
    p = replace(writer.policy, min_store_prob=min_store, min_key_prob=min_key)
    judge = ConstrainedWriter.__new__(ConstrainedWriter)
    judge.fmt, judge.policy = writer.fmt, p
    stored = right = due_right = false = 0
    for r, d in zip(rows, decisions):
        tag = judge.judge(d).tag
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


def fit_writer_policy(writer: ConstrainedWriter, rows: list[WriterRow], synonyms: dict[str, str],
                      min_precision: float = 0.90, max_false_store: float = 0.10, log=None):
    """Returns (policy with thresholds, report)."""
    from tqdm import tqdm

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    decisions = [writer.decide(r.message) for r in tqdm(rows, desc="calibrate writer", file=sys.stderr)]
    best = None
    for ms in GRID:
        for mk in GRID:
            m = score_decisions(writer, rows, decisions, synonyms, float(ms), float(mk))
            ok = m["precision"] >= min_precision and m["false_store_rate"] <= max_false_store
            key = (ok, m["recall"] if ok else m["precision"] * m["recall"] * (1 - m["false_store_rate"]), -ms, -mk)
            if best is None or key > best[0]:
                best = (key, float(ms), float(mk), m)
    _, ms, mk, m = best
    untuned = score_decisions(writer, rows, decisions, synonyms, 0.5, 0.0)
    report = {"split": "validation", "rows": len(rows), "targets": {"precision": min_precision,
                                                                   "false_store_rate": max_false_store},
              "met": bool(best[0][0]), "chosen": {k: round(v, 4) for k, v in m.items()},
              "at_0.5_0": {k: round(v, 4) for k, v in untuned.items()}}
    log(f"writer thresholds: store >= {ms}, key >= {mk}; validation " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    return replace(writer.policy, min_store_prob=ms, min_key_prob=mk, fit=report), report
