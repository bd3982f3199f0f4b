"""`ohlora eval expression`: the answer -> emotion head on held-out labelled answers
(agreement, macro F1, per emotion, against always answering the majority emotion)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ohlora.datasets.labelled import load_expression_csv
from ohlora.errors import OhloraError
from ohlora.expression import EMOTIONS, POLICY_FILE, ExpressionPolicy, Expressor, load_expressor, shipped_expression
from ohlora.memory.loading import untrained_encoder
from ohlora.paths import bundled, resolve_named


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    per = {}
    for j, e in enumerate(EMOTIONS):
        tp = int(((pred == j) & (y == j)).sum())
        p, r = tp / max(1, int((pred == j).sum())), tp / max(1, int((y == j).sum()))
        per[e] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n": int((y == j).sum())}
    present = [d["f1"] for d in per.values() if d["n"]]
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(present)),
            "per_emotion": per}


def evaluate_expression(expressor: Expressor, test_file: Path | None = None, cases: Path | None = None) -> dict:
    texts, y = load_expression_csv(test_file or bundled("data", "expressions", "test.csv"))
    probs = expressor.probs(texts)  # (N, C)
    pred = np.array([EMOTIONS.index(e.emotion) for e in expressor.decide(probs)])
    out = scores(pred, y)
    majority = int(np.bincount(y).argmax())
    out["majority_baseline"], out["majority_label"] = float((y == majority).mean()), EMOTIONS[majority]
    if cases is not None:
        cases.parent.mkdir(parents=True, exist_ok=True)
        with cases.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["answer", "emotion", "predicted", "confidence"])
            for t, yi, pi, pr in zip(texts, y, pred, probs.max(1)):  # confidence: the top probability
                w.writerow([t, EMOTIONS[yi], EMOTIONS[pi], f"{pr:.3f}"])
    return out


def run_expression_eval(which: str, test_file: Path | None, cases: Path | None) -> dict:
    """`ohlora eval expression`: the shipped head ("default") or a trained directory, on its base
    loaded here, over the held-out file."""

    path = resolve_named(which, shipped_expression(), "expression")
    if path is None or not (path / POLICY_FILE).is_file():
        raise OhloraError(f"no expression directory {which!r}: train one with `ohlora train expression`")
    base = ExpressionPolicy.load(path).base
    return evaluate_expression(load_expressor(path, untrained_encoder(base)), test_file, cases)


def format_expression_report(m: dict) -> str:
    lines = [f"agreement {m['accuracy']:.1%} on {m['n']} held-out answers (always {m['majority_label']!r}: "
             f"{m['majority_baseline']:.1%}); macro F1 {m['macro_f1']:.3f}", "",
             "| emotion | precision | recall | n |", "| --- | --- | --- | --- |"]
    lines += [f"| {e} | {d['precision']:.1%} | {d['recall']:.1%} | {d['n']} |" for e, d in m["per_emotion"].items()]
    return "\n".join(lines)


def dump(m: dict) -> str:
    return json.dumps(m, ensure_ascii=False)
