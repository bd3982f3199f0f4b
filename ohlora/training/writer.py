"""`ohlora train writer`: LoRA fine-tune of the memory writer (message -> one tag or nothing).

The same base model as the chat, with its own small adapter, trained on the SFT set's messages
(the tag each answer opens with, or nothing) plus the writer set written for the project; loss on
the answer only (" [key: value]\\n" or " 없음\\n", then EOS), the LM head applied only there.
A share of the training messages (by hash) is held out as the validation split: its loss is
logged after every epoch and the epoch with the lowest one is kept. At the end the held-out test
split is evaluated (`ohlora eval writer` gives the same numbers) and everything is saved beside
the adapter: writer_format.yaml, writer_policy.yaml (the key schema and the store thresholds,
calibrated on the validation split: writer_fit.py), head_vocab.json, writer_train.yaml,
train_log.csv, writer_eval.json and writer_cases.csv.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ohlora.datasets.writer import read_writer_rows, sft_writer_rows, split_valid
from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.head import build_head_vocab, load_head_vocab, save_head_vocab
from ohlora.errors import OhloraError
from ohlora.evaluation.writer import evaluate_writer
from ohlora.formats import read_yaml
from ohlora.memory.loading import WRITER_NAME
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import WriterFormat, validate_tag
from ohlora.memory.writer_decode import ConstrainedWriter, WriterPolicy
from ohlora.models import load_adapter, load_base, resolve_base, set_cpu_threads
from ohlora.parsing import squashed
from ohlora.paths import move_aside
from ohlora.settings import load_config
from ohlora.training.llm import _copy_licence
from ohlora.training.task_config import TaskTrainConfig
from ohlora.training.task_lora import batches, encode_task_row, fit_task_lora, task_model, write_train_log
from ohlora.training.writer_fit import fit_writer_policy

META_FILE = "writer_train.yaml"
EVAL_FILE = "writer_eval.json"


@dataclass(frozen=True)
class WriterTrainConfig(TaskTrainConfig):
    """The writer's settings: the shared ones (base: the chat's, the writer adapter sits beside the
    chat adapter on it; train_file: writer CSV message,tag,also; test_file: held-out writer CSV),
    plus the SFT file and the synonym groups."""

    WHAT = "writer train config"
    NAME = "writer"
    BUNDLED = {"train_file": ("data", "writer", "train.csv"), "sft_file": ("data", "sft", "train.csv"),
               "test_file": ("data", "writer", "test.csv"), "synonyms": ("memory_synonyms.yaml",)}

    sft_file: str = ""
    """SFT CSV whose inputs and tags are writer rows too (default: bundled; "none": not used)."""
    synonyms: str = ""
    batch_size: int = 16
    lora_rank: int = 8
    lora_alpha: int = 16
    span_values: bool = False
    """Decode the values of some keys as spans of the message (WriterPolicy.span_keys): the keys
    for which at least `span_min_share` of the training rows (and at least SPAN_MIN_ROWS) hold the
    value word for word (spaces ignored). Off by default: on the shipped writer and key-intent
    head it changed 3 of 776 validation decisions and no figure (docs/memory.md)."""
    span_min_share: float = 0.9


def load_writer_train_config(path: Path | None = None, **overrides) -> WriterTrainConfig:

    return load_config(WriterTrainConfig, path, "train_writer", what=WriterTrainConfig.WHAT, **overrides)


def encode_writer_row(row, tokenizer, fmt) -> dict:

    return encode_task_row(fmt.render(row.message), fmt.target(row.tag), tokenizer)


def training_rows(cfg: WriterTrainConfig):

    rows = read_writer_rows(Path(cfg.train_file))
    if cfg.sft_file.lower() != "none":
        rows += sft_writer_rows(Path(cfg.sft_file))
    seen, unique = set(), []
    for r in rows:  # one target per message: the first file wins
        if r.message not in seen:
            seen.add(r.message)
            unique.append(r)
    return split_valid(unique, cfg.valid_share)


SPAN_MIN_ROWS = 5


def span_keys_from(rows, min_share: float, min_rows: int = SPAN_MIN_ROWS) -> tuple[str, ...]:
    """Keys of the rows' tags whose value is a substring of the message (spaces ignored) in at
    least `min_share` of their rows, of at least `min_rows` rows."""
    held: dict[str, list[bool]] = {}
    for r in rows:
        if r.due:
            tag = validate_tag(r.tag).tag
            held.setdefault(tag.key, []).append(squashed(tag.value) in squashed(r.message))
    return tuple(sorted(k for k, v in held.items() if len(v) >= min_rows and sum(v) / len(v) >= min_share))


def starting_policy(cfg: WriterTrainConfig, train_rows, valid_rows) -> WriterPolicy:
    """The schema (the keys of all the rows) and, with `span_values`, the span keys; the store
    thresholds are fitted on it afterwards."""
    spans = span_keys_from(train_rows, cfg.span_min_share) if cfg.span_values else ()
    return WriterPolicy(schema_keys(train_rows + valid_rows), span_keys=spans)


def schema_keys(rows) -> tuple[str, ...]:
    """The keys of the writer's training rows: the schema its decoding is held to."""

    return tuple(sorted({validate_tag(r.tag).tag.key for r in rows if r.due}))


def train_writer(cfg: WriterTrainConfig, command: str = "", log=None) -> tuple[Path, dict]:
    """Train, keep the best epoch by validation loss, evaluate on the test split, save."""

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg = cfg.resolved()
    out = Path(cfg.output)
    fmt = WriterFormat()
    train_rows, valid_rows = training_rows(cfg)
    test_rows = read_writer_rows(Path(cfg.test_file))
    test_msgs = {r.message for r in test_rows}
    leaked = [r.message for r in train_rows + valid_rows if r.message in test_msgs]
    if leaked:
        raise OhloraError(f"{len(leaked)} test messages are also training messages, e.g. {leaked[0]!r}")
    if out.exists() and any(out.iterdir()):
        log(f"moved the previous {out.name} to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    spec, model, tok = task_model(cfg.base, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
                                  cfg.seed, cfg.threads)
    train_feats = [encode_writer_row(r, tok, fmt) for r in train_rows]
    valid_feats = [encode_writer_row(r, tok, fmt) for r in valid_rows]
    total = len(batches(train_feats, cfg.batch_size, None)) * cfg.epochs
    log(f"writer: {len(train_rows)} training rows ({sum(r.due for r in train_rows)} with a tag), "
        f"{len(valid_rows)} validation, {len(test_rows)} test; {total} steps")
    fit = fit_task_lora(model, tok, train_feats, valid_feats, out, epochs=cfg.epochs,
                        learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=cfg.seed, name="writer",
                        log=log)
    best, minutes = (fit.valid_loss, fit.best_epoch), fit.minutes
    fmt.save(out)
    texts = [fmt.target(r.tag) for r in train_rows + valid_rows] + [r.message for r in train_rows + valid_rows]
    vocab = build_head_vocab(tok, texts)
    save_head_vocab(vocab, out)
    _copy_licence(spec, out)
    write_train_log(out, fit.log_rows)
    synonyms = load_synonyms(Path(cfg.synonyms))
    writer = ConstrainedWriter(FastGenerator(model, tok, vocab, adapter=model.active_adapter), tok, fmt,
                               starting_policy(cfg, train_rows, valid_rows))
    if valid_rows:
        writer.policy, _ = fit_writer_policy(writer, valid_rows, synonyms, log=log, out_dir=out)
    writer.policy.save(out)
    metrics = evaluate_writer(writer, test_rows, synonyms, out, progress=True)
    meta = {"base": cfg.base, "command": command, "config": {**asdict(cfg), "lora_targets": list(cfg.lora_targets)},
            "best_epoch": best[1], "valid_loss": best[0], "train_rows": len(train_rows), "valid_rows": len(valid_rows),
            "train_minutes": round(minutes, 2), "test_metrics": metrics}
    (out / META_FILE).write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (out / EVAL_FILE).write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    log(f"trained in {minutes:.1f} min (best epoch {best[1]}); test: "
        + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    return out, metrics


def calibrate_writer(cfg: WriterTrainConfig, log=None) -> dict:
    """`ohlora train writer --calibrate-only`: for the writer adapter at cfg.output, choose the
    store thresholds on the validation split again (the same hash split of the same training
    files), save writer_policy.yaml and evaluate on the test split."""

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg = cfg.resolved()
    out = Path(cfg.output)
    if not (out / "adapter_config.json").is_file():
        raise OhloraError(f"{out} holds no writer adapter to calibrate (no adapter_config.json)")
    train_rows, valid_rows = training_rows(cfg)
    if not valid_rows:
        raise OhloraError("no validation rows to calibrate on (valid_share is 0)")
    set_cpu_threads(cfg.threads or None)
    model, tok = load_base(resolve_base(cfg.base))
    model = load_adapter(model, out, name=WRITER_NAME)
    fmt = WriterFormat.load(out)
    gen = FastGenerator(model, tok, load_head_vocab(out), adapter=WRITER_NAME)
    writer = ConstrainedWriter(gen, tok, fmt, starting_policy(cfg, train_rows, valid_rows))
    synonyms = load_synonyms(Path(cfg.synonyms))
    writer.policy, _ = fit_writer_policy(writer, valid_rows, synonyms, log=log, out_dir=out)
    writer.policy.save(out)
    metrics = evaluate_writer(writer, read_writer_rows(Path(cfg.test_file)), synonyms, out, progress=True)
    (out / EVAL_FILE).write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    meta_path = out / META_FILE
    meta = read_yaml(meta_path, "training record", missing_ok=True)
    meta["test_metrics"] = metrics
    meta_path.write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False), encoding="utf-8")
    log("test: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    return metrics
