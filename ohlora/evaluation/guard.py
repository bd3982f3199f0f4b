"""`ohlora eval guard`: the ethics guard on the held-out test split.

Reports accuracy, per-category precision and recall, the false-positive rate on normal messages,
accuracy per adversarial variant and the time per message; writes every case to `guard_cases.csv`.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import click
import numpy as np

from ohlora.datasets.labelled import guard_split, load_guard_csv
from ohlora.errors import OhloraError
from ohlora.paths import ensure_dir
from ohlora.safety.classifier import NORMAL, GuardPolicy, decide
from ohlora.safety.loading import load_guard_classifier


def metrics(probs: np.ndarray, y: np.ndarray, policy: GuardPolicy, variants: list[str] | None = None) -> dict:
    """Accuracy, per-category precision/recall, false-positive rate on normal messages."""
    cats = policy.categories
    pred = np.array([cats.index(v.category) for v in decide(probs, policy)])
    out: dict = {"n": int(len(y)), "accuracy": float((pred == y).mean())}
    normal = cats.index(NORMAL)
    out["false_positive_rate"] = float((pred[y == normal] != normal).mean()) if (y == normal).any() else 0.0
    per = {}
    for j, c in enumerate(cats):
        tp = int(((pred == j) & (y == j)).sum())
        per[c] = {"precision": tp / max(1, int((pred == j).sum())), "recall": tp / max(1, int((y == j).sum())),
                  "n": int((y == j).sum())}
    out["per_category"] = per
    if variants is not None:
        v = np.array(variants)
        out["accuracy_by_variant"] = {k: float((pred[v == k] == y[v == k]).mean()) for k in sorted(set(variants))}
    return out


def evaluate_guard(classifier, texts: list[str], labels, variants: list[str]) -> tuple[dict, list[dict]]:
    """(metrics dict, one row per case)."""
    t0 = time.perf_counter()
    probs = classifier.probs(texts)  # (N, C)
    ms = 1000 * (time.perf_counter() - t0) / max(1, len(texts))
    policy = classifier.policy
    out = metrics(probs, np.asarray(labels), policy, variants)
    out["ms_per_message"] = ms
    cases = []
    for text, y, v, verdict in zip(texts, labels, variants, decide(probs, policy)):
        cases.append({"text": text, "category": policy.categories[y], "variant": v, "predicted": verdict.category,
                      "score": round(verdict.score, 4), "correct": verdict.category == policy.categories[y]})
    return out, cases


def run_guard_eval(which: str, test_file: Path | None, output: Path | None, as_json: bool) -> dict:

    texts, labels, variants = load_guard_csv(test_file or guard_split("test"))
    classifier = load_guard_classifier(which)
    if classifier is None:
        raise OhloraError("no guard to evaluate: pass --guard DIR (from `ohlora train guard`)")
    click.echo(f"Classifying {len(texts)} test sentences ...", err=True)
    result, cases = evaluate_guard(classifier, texts, labels, variants)
    if output is not None:
        ensure_dir(output)
        with (output / "guard_cases.csv").open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(cases[0]))
            w.writeheader()
            w.writerows(cases)
        (output / "guard_metrics.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(format_guard_report(result))
    return result


def format_guard_report(m: dict) -> str:
    lines = [f"accuracy {m['accuracy']:.1%} on {m['n']} sentences; false positives on normal messages "
             f"{m['false_positive_rate']:.1%}; {m.get('ms_per_message', 0):.0f} ms per message",
             "", "| category | precision | recall | n |", "| --- | --- | --- | --- |"]
    for c, d in m["per_category"].items():
        lines.append(f"| {c} | {d['precision']:.1%} | {d['recall']:.1%} | {d['n']} |")
    if m.get("accuracy_by_variant"):
        lines += ["", "accuracy by variant: " + ", ".join(f"{k} {v:.1%}" for k, v in m["accuracy_by_variant"].items())]
    return "\n".join(lines)
