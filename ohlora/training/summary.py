"""`ohlora train summary`: LoRA fine-tune of the running-summary model (summary so far + turns ->
new summary), on the chat's base, beside the chat and writer adapters.

The rows are the project's summary data (`assets/data/summaries/train.jsonl`); a share of them,
split by source dialogue, is the validation split: its loss picks the epoch, and the check's
thresholds (`SummaryFormat.min_grounded`, `min_kept`) are set from the reference summaries, so that
98% of the references themselves would pass. The held-out test rows are evaluated at the end
(`ohlora eval summary` gives the same numbers). Saved beside the adapter: summary_format.yaml,
head_vocab.json, summary_train.yaml, train_log.csv, summary_eval.json, summary_cases.csv.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from ohlora.datasets.summaries import read_summary_rows, split_valid
from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.head import build_head_vocab, save_head_vocab
from ohlora.errors import OhloraError
from ohlora.evaluation.summary import evaluate_summarizer
from ohlora.memory.summarizer import AdapterSummarizer, SummaryFormat, grounding, kept
from ohlora.paths import move_aside
from ohlora.settings import load_config
from ohlora.training.llm import _copy_licence
from ohlora.training.task_config import TaskTrainConfig
from ohlora.training.task_lora import batches, encode_task_row, fit_task_lora, task_model, write_train_log

META_FILE = "summary_train.yaml"
EVAL_FILE = "summary_eval.json"
PASS_SHARE = 0.98
"""The check's thresholds let this share of the reference summaries pass."""


@dataclass(frozen=True)
class SummaryTrainConfig(TaskTrainConfig):
    """The summarizer's settings (train_file, test_file: summary JSONL), all shared ones."""

    WHAT = "summary train config"
    NAME = "summary"
    BUNDLED = {"train_file": ("data", "summaries", "train.jsonl"), "test_file": ("data", "summaries", "test.jsonl")}


def load_summary_train_config(path: Path | None = None, **overrides) -> SummaryTrainConfig:

    return load_config(SummaryTrainConfig, path, "train_summary", what=SummaryTrainConfig.WHAT, **overrides)


def calibrated_format(rows, fmt=None):
    """The format with the check's thresholds set so that PASS_SHARE of the reference summaries pass."""

    fmt = fmt or SummaryFormat()

    def low(values: list[float]) -> float:
        values = sorted(values)
        q = values[int(math.floor((1 - PASS_SHARE) * (len(values) - 1)))] if values else 0.0
        return math.floor(q * 20) / 20  # down to a multiple of 0.05

    g = [grounding(r.summary, fmt.source(r.previous, r.turns)) for r in rows]
    k = [kept(r.summary, r.previous) for r in rows if r.previous.strip()]
    longest = max(len(r.summary) for r in rows)
    return replace(fmt, min_grounded=low(g), min_kept=low(k), max_chars=max(fmt.max_chars, longest + 10))


def train_summary(cfg: SummaryTrainConfig, command: str = "", log=None) -> tuple[Path, dict]:
    """Train, keep the best epoch by validation loss, set the check, evaluate on the test split, save."""

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg = cfg.resolved()
    out = Path(cfg.output)
    train_rows, valid_rows = split_valid(read_summary_rows(Path(cfg.train_file)), cfg.valid_share)
    test_rows = read_summary_rows(Path(cfg.test_file))
    seen = {(r.previous, tuple(r.turns)) for r in train_rows + valid_rows}
    leaked = [r.id for r in test_rows if (r.previous, tuple(r.turns)) in seen]
    if leaked:
        raise OhloraError(f"{len(leaked)} test rows are also training rows, e.g. {leaked[0]}")
    if out.exists() and any(out.iterdir()):
        log(f"moved the previous {out.name} to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    fmt = calibrated_format(train_rows + valid_rows, SummaryFormat())
    spec, model, tok = task_model(cfg.base, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
                                  cfg.seed, cfg.threads)

    def encode(r):
        return encode_task_row(fmt.render(r.previous, r.turns), fmt.target(r.summary), tok)

    train_feats, valid_feats = [encode(r) for r in train_rows], [encode(r) for r in valid_rows]
    total = len(batches(train_feats, cfg.batch_size, None)) * cfg.epochs
    log(f"summary: {len(train_rows)} training rows, {len(valid_rows)} validation, {len(test_rows)} test; "
        f"{total} steps; check: grounded >= {fmt.min_grounded}, kept >= {fmt.min_kept}, <= {fmt.max_chars} chars")
    fit = fit_task_lora(model, tok, train_feats, valid_feats, out, epochs=cfg.epochs,
                        learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=cfg.seed, name="summary",
                        log=log)
    fmt.save(out)
    texts = [fmt.target(r.summary) for r in train_rows + valid_rows] + [
        fmt.source(r.previous, r.turns) for r in train_rows + valid_rows]
    vocab = build_head_vocab(tok, texts)
    save_head_vocab(vocab, out)
    _copy_licence(spec, out)
    write_train_log(out, fit.log_rows)
    summarizer = AdapterSummarizer(FastGenerator(model, tok, vocab, adapter=model.active_adapter), fmt)
    valid_metrics = evaluate_summarizer(summarizer, valid_rows, progress=True) if valid_rows else {}
    metrics = evaluate_summarizer(summarizer, test_rows, out, progress=True)
    meta = {"base": cfg.base, "command": command, "config": {**asdict(cfg), "lora_targets": list(cfg.lora_targets)},
            "best_epoch": fit.best_epoch, "valid_loss": fit.valid_loss, "train_rows": len(train_rows),
            "valid_rows": len(valid_rows), "train_minutes": round(fit.minutes, 2), "valid_metrics": valid_metrics,
            "test_metrics": metrics}
    (out / META_FILE).write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (out / EVAL_FILE).write_text(json.dumps(metrics, indent=1, ensure_ascii=False), encoding="utf-8")
    log(f"trained in {fit.minutes:.1f} min (best epoch {fit.best_epoch}); test: "
        + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, ensure_ascii=False))
    return out, metrics
