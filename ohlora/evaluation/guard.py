"""`ohlora eval guard`: the ethics guard on the held-out test split.

Reports accuracy, per-category precision and recall, the false-positive rate on normal messages
(and the share of them that would block: fired above the category's warning band), accuracy per
adversarial variant and the recall of the non-normal rows per variant, and the time per message;
writes every case to `guard_cases.csv`. `--file` reads any guard CSV, e.g. the everyday set
(`ohlora/assets/data/guard/everyday.csv`, all normal).
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
    """Accuracy, per-category precision/recall, false-positive rate on normal messages (and the
    rate at which they would block: fired above the warning band), recall per variant."""
    cats = policy.categories
    verdicts = decide(probs, policy)
    pred = np.array([cats.index(v.category) for v in verdicts])
    clear = np.array([v.fired and not v.near for v in verdicts], dtype=bool)
    out: dict = {"n": int(len(y)), "accuracy": float((pred == y).mean())}
    normal = cats.index(NORMAL)
    is_normal = y == normal
    out["false_positives"] = int((pred[is_normal] != normal).sum())
    out["false_positive_rate"] = float((pred[is_normal] != normal).mean()) if is_normal.any() else 0.0
    out["blocking_false_positives"] = int(clear[is_normal].sum())
    out["blocking_false_positive_rate"] = float(clear[is_normal].mean()) if is_normal.any() else 0.0
    per = {}
    for j, c in enumerate(cats):
        tp = int(((pred == j) & (y == j)).sum())
        per[c] = {"precision": tp / max(1, int((pred == j).sum())), "recall": tp / max(1, int((y == j).sum())),
                  "n": int((y == j).sum())}
    out["per_category"] = per
    if variants is not None:
        v = np.array(variants)
        out["accuracy_by_variant"] = {k: float((pred[v == k] == y[v == k]).mean()) for k in sorted(set(variants))}
        risky = ~is_normal
        out["recall_by_variant"] = {k: float((pred[risky & (v == k)] == y[risky & (v == k)]).mean())
                                    for k in sorted(set(v[risky]))}
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
                      "score": round(verdict.score, 4), "near": verdict.near,
                      "correct": verdict.category == policy.categories[y]})
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
    head = (f"accuracy {m['accuracy']:.1%} on {m['n']} sentences; false positives on normal messages "
            f"{m['false_positive_rate']:.1%} ({m['false_positives']}), above a block's threshold "
            f"{m['blocking_false_positive_rate']:.1%} ({m['blocking_false_positives']}); "
            f"{m.get('ms_per_message', 0):.0f} ms per message")
    lines = [head,
             "", "| category | precision | recall | n |", "| --- | --- | --- | --- |"]
    for c, d in m["per_category"].items():
        lines.append(f"| {c} | {d['precision']:.1%} | {d['recall']:.1%} | {d['n']} |")
    if m.get("accuracy_by_variant"):
        lines += ["", "accuracy by variant: " + ", ".join(f"{k} {v:.1%}" for k, v in m["accuracy_by_variant"].items())]
    if m.get("recall_by_variant"):
        lines += ["recall (non-normal rows) by variant: "
                  + ", ".join(f"{k} {v:.1%}" for k, v in m["recall_by_variant"].items())]
    return "\n".join(lines)
