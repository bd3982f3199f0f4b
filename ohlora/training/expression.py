"""`ohlora train expression` / `ohlora eval expression`: the answer -> emotion head.

Recipe: embed each labelled answer (EmbeddingGemma, adapter off, classification prompt), fit the
class-weighted softmax head on the training file minus a fixed 15% validation share, choose the
L2 penalty on that share, refit on the whole training file and save. The held-out test file is
for `ohlora eval expression` only: agreement (accuracy), macro F1, and per-emotion figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ohlora.expression import EMOTIONS, POLICY_FILE, TEMPLATE, ExpressionPolicy, Expressor
from ohlora.training.llm_config import bundled
from ohlora.training.softmax_head import embed, fit_head, read_labelled

L2_GRID = (1e-2, 1e-3, 3e-4, 1e-4, 3e-5)


def load_expression_csv(path: Path) -> tuple[list[str], np.ndarray]:
    texts, labels, _ = read_labelled(path, "answer", "emotion", EMOTIONS, "expression CSV")
    return texts, labels


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    per = {}
    for j, e in enumerate(EMOTIONS):
        tp = int(((pred == j) & (y == j)).sum())
        p, r = tp / max(1, int((pred == j).sum())), tp / max(1, int((y == j).sum()))
        per[e] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n": int((y == j).sum())}
    present = [d["f1"] for d in per.values() if d["n"]]
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(present)),
            "per_emotion": per}


def train_expression(output: Path, train_file: Path | None = None, base: str = "embeddinggemma-300m",
                     encoder=None, log=print) -> dict:
    from ohlora.safety.loading import classification_encoder

    texts, y = load_expression_csv(train_file or bundled("data", "expressions", "train.csv"))
    encoder = encoder or classification_encoder(base)
    x = embed(encoder, texts, "train")  # (N, D)
    rng = np.random.default_rng(0)
    valid = rng.random(len(y)) < 0.15
    results = {}
    for l2 in L2_GRID:
        head = fit_head(x[~valid], y[~valid], len(EMOTIONS), l2, 500)
        results[l2] = scores(head.probs(x[valid]).argmax(1), y[valid])
        log(f"l2={l2:g}: validation accuracy {results[l2]['accuracy']:.3f}, macro F1 {results[l2]['macro_f1']:.3f}")
    best = max(L2_GRID, key=lambda k: (results[k]["macro_f1"], results[k]["accuracy"]))
    head = fit_head(x, y, len(EMOTIONS), best, 500)
    policy = ExpressionPolicy(base=base, query_template=TEMPLATE,
                              metrics={"l2": best, "valid_accuracy": round(results[best]["accuracy"], 4),
                                       "valid_macro_f1": round(results[best]["macro_f1"], 4)})
    output.mkdir(parents=True, exist_ok=True)
    head.save(output)
    policy.save(output)
    return {"l2": best, "valid": results[best]}


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
    from ohlora.errors import OhloraError
    from ohlora.expression import load_expressor, shipped_expression
    from ohlora.memory.loading import untrained_encoder

    path = shipped_expression() if which == "default" else Path(which)
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
