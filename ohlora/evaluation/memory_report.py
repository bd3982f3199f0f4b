"""Drive `ohlora eval memory`: the bi-encoder's fit (MSE/MAE/corr, scatter plot) and the shipped
two-stage recall pipeline (top-1, rank-1, recall@k, false recall, held-out keys apart, latency)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ohlora.datasets.combinations import load_combs, make_pairs, read_pairs, read_pairs_from_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.memory import evaluate_memory
from ohlora.evaluation.recall import decision_latency, recall_report, split_scores
from ohlora.memory.loading import load_memory_encoder, load_recall
from ohlora.memory.synonyms import load_synonyms
from ohlora.paths import bundled, home_dir

ENCODER_ROWS = ("mse", "mae", "corr", "top1_accuracy", "rank1_accuracy", "false_recall", "n_pairs")
RECALL_ROWS = ("top1_accuracy", "rank1_accuracy", "false_recall", "recall_at_1", "recall_at_3", "recall_at_5",
               "recall_at_10", "top1_heldout", "rank1_heldout", "false_recall_heldout", "top1_seen", "rank1_seen",
               "false_recall_seen", "n_messages", "n_heldout", "n_seen")


def table(metrics: dict, rows: tuple[str, ...]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    for k in rows:
        if k in metrics:
            v = metrics[k]
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    return "\n".join(lines)


def run_memory_eval(combs: Path | None, pairs: Path | None, encoder: str, base: str, threshold: float,
                    recall_threshold: float | None, output: Path | None, as_json: bool) -> dict:

    if combs and pairs:
        raise OhloraError("give --combs or --pairs, not both")
    synonyms = load_synonyms()
    lines = None
    if pairs:
        test = read_pairs(pairs)
    else:
        lines = load_combs(combs or Path(bundled("data", "memory", "test_combs.txt")))
        test = read_pairs_from_rows(make_pairs(lines, synonyms))
    enc = load_memory_encoder(encoder, base)
    out = Path(output or home_dir() / "eval" / "memory")
    stage1 = evaluate_memory(enc, test, threshold, out, title=enc.id)
    result = {**{k: stage1[k] for k in ("mse", "mae", "corr", "n_pairs")}, "encoder": stage1}
    click.echo(f"## Bi-encoder ({enc.id}), cosine threshold {threshold}\n\n" + table(stage1, ENCODER_ROWS))
    if lines is not None:
        decider, reference = load_recall(enc)
        t = decider.policy.threshold if recall_threshold is None else recall_threshold
        s = split_scores(enc, decider, lines, synonyms, reference)
        train_keys = {c.key for c in load_combs(Path(bundled("data", "memory", "train_combs.txt")))}
        recall = {"method": decider.policy.method, "threshold": t,
                  **recall_report(s, t, train_keys, synonyms),
                  **decision_latency(enc, decider, s, reference=reference)}
        result["recall"] = recall
        ref = ", with the reference encoder" if reference is not None else ""
        click.echo(f"\n## Recall as the chat does it: {decider.policy.method} decision at {t:.3f} "
                   f"(stage 1 shortlist {decider.policy.shortlist}{ref})\n\n"
                   + table(recall, RECALL_ROWS + ("encode_query_ms", "decision_ms_10", "decision_ms_50")))
    (out / "memory_eval.json").write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    click.echo(f"pairs: {out / 'memory_pairs.csv'}  plot: {out / 'memory_scatter.png'}  "
               f"metrics: {out / 'memory_eval.json'}", err=True)
    if as_json:
        click.echo(json.dumps(result, default=float))
    return result
