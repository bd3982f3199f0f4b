"""`ohlora eval summary`: the summarizer on held-out rows (summary so far + turns -> new summary).

Metrics (a dict, as sentence-transformers' evaluators return):
- valid: share of new summaries that pass `validate_summary` (the rest keep the previous one);
- fact_recall: share of the reference's must-include facts found in the summary that is kept;
- bigram_f1: character-bigram F1 of the kept summary against the reference;
- the same two for an extractive baseline (the previous summary, then the user's messages, cut to
  the length limit), which shows what a model adds over copying;
- ms_mean: time per fold; reasons: why summaries were refused;
- speaker_swaps_caught / speaker_false_flags: the check that gives a fact the user told back to
  the user (`오로라는 김치찌개를 좋아함` -> `사용자는 ...`), on the fixed set `summaries/speakers.jsonl`.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import click
from tqdm import tqdm

from ohlora.datasets.jsonlines import read_jsonl
from ohlora.datasets.summaries import read_summary_rows
from ohlora.errors import OhloraError
from ohlora.memory.loading import attach_summarizer, shipped_summary_adapter
from ohlora.memory.summarizer import swapped_sentences
from ohlora.models import load_base, resolve_base, set_cpu_threads
from ohlora.parsing import normalize_space
from ohlora.paths import bundled, ensure_dir, home_dir, resolve_named
from ohlora.store.conversations import Turn

CASES_FILE = "summary_cases.csv"


def bigrams(text: str) -> Counter:
    s = "".join(normalize_space(text).split())
    return Counter(s[i:i + 2] for i in range(len(s) - 1))


def bigram_f1(pred: str, ref: str) -> float:
    p, r = bigrams(pred), bigrams(ref)
    hit = sum((p & r).values())
    if not hit:
        return 0.0
    prec, rec = hit / sum(p.values()), hit / sum(r.values())
    return 2 * prec * rec / (prec + rec)


def extractive(previous: str, turns, max_chars: int) -> str:
    """The baseline: the previous summary and the user's messages, cut to max_chars."""
    text = " ".join([previous.strip()] + [normalize_space(t.user) for t in turns]).strip()
    return text[:max_chars]


def facts_found(text: str, facts) -> tuple[int, int]:
    return sum(f in text for f in facts), len(facts)


def evaluate_summarizer(summarizer, rows, out_dir: Path | None = None, progress: bool = False) -> dict:

    fmt = summarizer.fmt
    cases, valid, f1s, base_f1s, ms = [], 0, [], [], []
    found = total = base_found = 0
    reasons: Counter = Counter()
    for r in tqdm(rows, desc="eval summary", file=sys.stderr, disable=not progress):
        res = summarizer.fold(r.previous, r.turns)
        ok = res.reason == "ok"
        valid += ok
        reasons[res.reason] += 1
        got, n = facts_found(res.summary, r.must_include)
        base = extractive(r.previous, r.turns, fmt.max_chars)
        bgot, _ = facts_found(base, r.must_include)
        found, total, base_found = found + got, total + n, base_found + bgot
        f1s.append(bigram_f1(res.summary, r.summary))
        base_f1s.append(bigram_f1(base, r.summary))
        ms.append(res.ms)
        cases.append({"id": r.id, "reason": res.reason, "written": res.raw, "kept": res.summary,
                      "reference": r.summary, "facts": "|".join(r.must_include), "facts_found": got})
    n = max(1, len(rows))
    metrics = {
        "rows": len(rows),
        "valid": valid / n,
        "fact_recall": found / max(1, total),
        "bigram_f1": statistics.fmean(f1s) if f1s else 0.0,
        "baseline_fact_recall": base_found / max(1, total),
        "baseline_bigram_f1": statistics.fmean(base_f1s) if base_f1s else 0.0,
        "ms_mean": statistics.fmean(ms) if ms else 0.0,
        "reasons": dict(reasons),
    }
    if out_dir is not None:
        with (Path(out_dir) / CASES_FILE).open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, list(cases[0]) if cases else ["id"])
            w.writeheader()
            w.writerows(cases)
    return metrics


def speaker_check(path: Path | None = None) -> dict:
    """The swapped-speaker check (`summarizer.swapped_sentences`) on a fixed set of summaries
    (`summaries/speakers.jsonl`: turns, a summary, and whether it gives the user's fact to her):
    the share of swapped summaries caught and of correct ones it would change."""
    rows = read_jsonl(path or Path(bundled("data", "summaries", "speakers.jsonl")))
    swapped = [r for r in rows if r.get("swapped")]
    right = [r for r in rows if not r.get("swapped")]

    def flagged(r) -> bool:
        return bool(swapped_sentences(r["summary"], [Turn(t["user"], t["answer"]) for t in r["turns"]]))

    return {"speaker_rows": len(rows), "speaker_swaps_caught": sum(map(flagged, swapped)) / max(1, len(swapped)),
            "speaker_false_flags": sum(map(flagged, right)) / max(1, len(right))}


def run_summary_eval(which: str, base: str, file_: Path | None, output: Path | None, as_json: bool) -> dict:
    """`ohlora eval summary`: load the base and the summary adapter, evaluate, print, save the cases."""

    path = resolve_named(which, shipped_summary_adapter(base), "summary adapter")
    if path is None and which == "default":
        raise OhloraError(f"no summary model is shipped for {base}: pass --summary DIR (from `ohlora train summary`)")
    if path is None:
        raise OhloraError(f"--summary {which}: no summary model to evaluate; pass --summary default or DIR")
    if not (Path(path) / "adapter_config.json").is_file():
        raise OhloraError(f"{path} holds no summary adapter (no adapter_config.json)")
    rows = read_summary_rows(file_ or Path(bundled("data", "summaries", "test.jsonl")))
    set_cpu_threads()
    model, tok = load_base(resolve_base(base))
    _, summarizer = attach_summarizer(model, tok, Path(path))
    out = ensure_dir(Path(output or home_dir() / "eval" / "summary"))
    metrics = {"summary_model": Path(path).name, **evaluate_summarizer(summarizer, rows, out, progress=True),
               **speaker_check()}
    (out / "summary_metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=1), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(metrics, ensure_ascii=False))
    else:
        for k, v in metrics.items():
            click.echo(f"{k}: {v:.1%}" if isinstance(v, float) and k != "ms_mean" else f"{k}: {v}")
    return metrics
