"""`ohlora train intent`: fit the key-intent head and calibrate it with the writer it serves.

Recipe: the writer's own rows (`ohlora train writer`'s training files and its hash split into
train and validation, so the head never sees the writer's validation or test messages), labelled
with their tag's key or "nothing". Each message is embedded once by EmbeddingGemma (adapter off,
the classification prompt), its character 2- and 3-grams (those of at least two training
messages) put beside the embedding, and a multinomial logistic regression fitted (L-BFGS, one L2
penalty per feature kind; `fit_head`). Then `min_key_prob` is chosen on the validation split
with the writer in the loop: per validation message the writer decodes once with the head's key
forced and once on its own; for each candidate threshold the rows above it take the forced
write, the others the writer's own, and the threshold with the highest recall whose precision
is >= `min_precision` and false-store rate <= `max_false_store` wins (none: the best F0.5).
Then `skip_nothing_prob`: the lowest P(nothing) above which not running the writer at all costs
at most `max_skip_recall_loss` of validation recall (most chat turns state no fact, so the
writer's decode is saved on most turns). Every validation decision goes to intent_valid_cases.csv.
Finally the writer's test split is evaluated (`ohlora eval writer` gives the same numbers).
`--head DIR` calibrates an existing head again (its weights unchanged) instead of fitting one.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ohlora.datasets.writer import read_writer_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.writer import evaluate_writer, same_item
from ohlora.memory.heads import SoftmaxHead
from ohlora.memory.intent import NOTHING, IntentPolicy, IntentWriter, KeyIntent, prepare, resolve_intent
from ohlora.memory.loading import adapter_fingerprint, attach_writer, shipped_writer_adapter
from ohlora.memory.ngrams import NgramVocabulary
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import validate_tag
from ohlora.memory.writer_decode import ConstrainedWriter
from ohlora.models import load_base, resolve_base, set_cpu_threads
from ohlora.paths import home_dir, resolve_named
from ohlora.safety.loading import classification_encoder
from ohlora.training.softmax_head import embed, fit_with_ngrams
from ohlora.training.writer import WriterTrainConfig, training_rows

EVAL_FILE = "intent_eval.json"
VALID_CASES = "intent_valid_cases.csv"
GRID = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))  # 0.2 .. 0.95


@dataclass(frozen=True)
class IntentTrainConfig:
    base: str = "embeddinggemma-300m"
    l2: float = 3e-6
    """L2 penalty on the embedding's weights. Chosen on the writer's validation split (key decision
    alone, 1e-4 .. 1e-6): 1e-4 is far too strong (recall < 40% at 0.3), 1e-5 .. 1e-6 all reach
    ~80% key recall at ~90% key precision."""
    l2_ngrams: float = 3e-6
    ngram_sizes: tuple = (2, 3)
    ngram_min_count: int = 2
    min_precision: float = 0.9
    max_false_store: float = 0.05
    max_skip_recall_loss: float = 0.01
    """skip_nothing_prob is the lowest P(nothing) above which skipping the writer costs at most
    this much validation recall (the writer's decode is saved on every message it skips)."""
    steps: int = 300

    def __post_init__(self) -> None:
        if self.l2 < 0 or self.l2_ngrams < 0 or self.steps < 1 or self.ngram_min_count < 1:
            raise OhloraError("l2 and l2_ngrams must be >= 0, steps and ngram_min_count >= 1")
        if not all(0 <= v <= 1 for v in (self.min_precision, self.max_false_store, self.max_skip_recall_loss)):
            raise OhloraError("min_precision, max_false_store and max_skip_recall_loss must be in [0, 1]")


def labelled(rows, keys: tuple[str, ...]) -> np.ndarray:
    """(N,) class per row: 0 nothing, 1 + index of its tag's key."""
    return np.array([1 + keys.index(validate_tag(r.tag).tag.key) if r.due else 0 for r in rows])


def figures(cases: list[dict], t: float, skip: float | None = None) -> dict:
    """Validation figures when rows with p_key >= `t` take the forced write, rows with p_nothing >=
    `skip` (of the others) store nothing, and the rest the writer's own write."""
    n_due = max(1, sum(c["due"] for c in cases))
    n_nothing = max(1, sum(not c["due"] for c in cases))
    pick = ["forced" if c["p_key"] >= t else "skip" if skip is not None and c["p_nothing"] >= skip else "own"
            for c in cases]
    stored = [p != "skip" and c[f"{p}_stored"] for c, p in zip(cases, pick)]
    right = [s and c[f"{p}_right"] for c, p, s in zip(cases, pick, stored)]
    n_stored = sum(stored)
    prec = sum(right) / n_stored if n_stored else 0.0
    rec = sum(r for r, c in zip(right, cases) if c["due"]) / n_due
    fs = sum(s for s, c in zip(stored, cases) if not c["due"]) / n_nothing
    f05 = 1.25 * prec * rec / (0.25 * prec + rec) if prec + rec else 0.0
    return {"threshold": t, "precision": prec, "recall": rec, "false_store_rate": fs, "f0_5": f05,
            "skipped": pick.count("skip") / max(1, len(cases))}


def choose_threshold(cases: list[dict], cfg: IntentTrainConfig, grid=GRID) -> tuple[float, dict]:
    """`cases`: per validation row {"p_key", "due", "forced_right", "forced_stored", "own_right",
    "own_stored"}. Returns (threshold, its validation figures)."""
    table = [figures(cases, t) for t in (*grid, 1.01)]  # 1.01: the head never decides (the writer alone)
    ok = [r for r in table if r["precision"] >= cfg.min_precision and r["false_store_rate"] <= cfg.max_false_store]
    best = max(ok, key=lambda r: (r["recall"], r["precision"])) if ok else max(table, key=lambda r: r["f0_5"])
    return float(min(1.0, best["threshold"])), best


SKIP_GRID = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))  # 0.5 .. 0.99


def choose_skip(cases: list[dict], threshold: float, cfg: IntentTrainConfig,
                grid=SKIP_GRID) -> tuple[float | None, dict]:
    """The lowest P(nothing) at which the writer is skipped whose validation recall stays within
    `cfg.max_skip_recall_loss` of never skipping, and whose precision does not fall; (None, the
    figures without skipping) if none. `cases` need "p_nothing" too."""
    base = figures(cases, threshold)
    for s in grid:  # ascending: the first that keeps recall skips the most
        f = figures(cases, threshold, s)
        if f["recall"] >= base["recall"] - cfg.max_skip_recall_loss - 1e-9 and f["precision"] >= base["precision"] - 1e-9:
            return s, {**f, "skip_nothing_prob": s}
    return None, {**base, "skip_nothing_prob": None}


def tag_text(tag) -> str:
    return tag.text if tag is not None else ""


def earlier_decodes(path: Path | None, writer_id: str) -> tuple[dict, dict]:
    """The writer's decodes of an earlier calibration (its intent_valid_cases.csv) by the same
    writer (`writer_id`, its adapter's content hash): ({message: own tag}, {(message, key): forced
    tag}), "" for nothing. A message the writer decoded once need not be decoded again: its
    decode does not depend on the head (only which key is forced does)."""
    if path is None or not writer_id:
        return {}, {}
    path = Path(path) / VALID_CASES if Path(path).is_dir() else Path(path)
    if not path.is_file():
        return {}, {}
    own, forced = {}, {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("writer") == writer_id:
                own[row["message"]] = row["own"]
                forced[(row["message"], row["key"])] = row["forced"]
    return own, forced


def train_intent(cfg: IntentTrainConfig, writer_cfg: WriterTrainConfig, output: Path, writer, encoder=None,
                 synonyms: dict | None = None, log=None, head_dir: Path | None = None,
                 writer_id: str = "", reuse: Path | None = None) -> dict:
    """Fit, calibrate (with `writer`, a ConstrainedWriter) and save the head into `output`; returns
    the validation and test figures. `head_dir`: calibrate the head saved there instead of fitting
    one (its weights and n-grams are copied to `output` unchanged). `reuse`: an earlier
    calibration's directory (or its cases CSV) whose decodes by the same writer (`writer_id`) are
    taken instead of decoding again."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    synonyms = synonyms or {}
    train_rows, valid_rows = training_rows(writer_cfg)
    test_rows = read_writer_rows(Path(writer_cfg.test_file))
    if not valid_rows:
        raise OhloraError("no validation rows to calibrate on (the writer's valid_share is 0)")
    keys = tuple(k for k in writer.policy.keys)
    missing = {validate_tag(r.tag).tag.key for r in train_rows if r.due} - set(keys)
    if missing:
        raise OhloraError(f"training keys the writer's schema lacks: {sorted(missing)[:3]}")
    if encoder is None:
        encoder = classification_encoder(cfg.base)
    t0 = time.perf_counter()
    if head_dir is not None:
        old_policy = IntentPolicy.load(Path(head_dir))
        if tuple(old_policy.keys) != keys:
            raise OhloraError(f"{head_dir}: the head's keys are not the writer's schema; fit a new head instead")
        head = SoftmaxHead.load(Path(head_dir))
        ngrams = NgramVocabulary.load(Path(head_dir), old_policy.ngram_sizes) if old_policy.ngram_sizes else None
        cfg = replace(cfg, ngram_sizes=tuple(old_policy.ngram_sizes))
        log(f"Calibrating the head in {head_dir} (not refitted) ...")
    else:
        log(f"Embedding {len(train_rows)} training and {len(valid_rows)} validation messages ...")
        train_p = [prepare(r.message) for r in train_rows]
        xt = embed(encoder, train_p, "train")  # (N, D)
        head, ngrams, _ = fit_with_ngrams(xt, train_p, labelled(train_rows, keys), 1 + len(keys),
                                          tuple(cfg.ngram_sizes), cfg.ngram_min_count, cfg.l2, cfg.l2_ngrams,
                                          cfg.steps, balanced=False)
    policy = IntentPolicy(keys=keys, base=cfg.base, ngram_sizes=tuple(cfg.ngram_sizes))
    intent = KeyIntent(encoder, head, policy, ngrams)
    iw = IntentWriter(intent, writer)
    cases = []
    predicted = intent.predict([r.message for r in valid_rows])
    own_seen, forced_seen = earlier_decodes(reuse, writer_id)
    log(f"Calibrating on {len(valid_rows)} validation messages (the writer decodes each twice; "
        f"{len(own_seen)} of an earlier calibration reused) ...")
    for r, it in tqdm(list(zip(valid_rows, predicted)), desc="calibrating", unit="msg", file=sys.stderr):
        forced = forced_seen.get((r.message, it.key))
        forced = forced if forced is not None else tag_text(iw.decide(r.message, it, threshold=0.0).tag)
        own = own_seen.get(r.message)
        own = own if own is not None else tag_text(writer.write(r.message).tag)
        ok = lambda text: bool(text) and any(same_item(validate_tag(text).tag, e, synonyms) for e in r.accepted)  # noqa: E731
        cases.append({"message": r.message, "key": it.key, "p_key": it.p_key, "p_nothing": it.p_nothing, "due": r.due,
                      "forced": forced, "own": own, "forced_stored": bool(forced), "forced_right": ok(forced),
                      "own_stored": bool(own), "own_right": ok(own), "writer": writer_id})
    threshold, valid = choose_threshold(cases, cfg)
    skip, valid = choose_skip(cases, threshold, cfg)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with (output / VALID_CASES).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(cases[0]))
        w.writeheader()
        w.writerows(cases)
    policy = IntentPolicy(keys=keys, min_key_prob=threshold, skip_nothing_prob=skip, base=cfg.base,
                          ngram_sizes=tuple(cfg.ngram_sizes),
                          metrics={k: round(v, 4) for k, v in valid.items()
                                   if k not in ("threshold", "skip_nothing_prob") and v is not None}
                          | {"valid_messages": len(valid_rows),
                             "train_messages": (old_policy.metrics.get("train_messages") if head_dir is not None
                                                else len(train_rows)),
                             "classes": 1 + len(keys)})
    head.save(output)
    policy.save(output)
    if ngrams is not None:
        ngrams.save(output)
    intent = KeyIntent(encoder, head, policy, ngrams)
    test = evaluate_writer(IntentWriter(intent, writer), test_rows, synonyms, output, progress=True)
    config = {**asdict(cfg), "ngram_sizes": list(cfg.ngram_sizes)}
    if head_dir is not None:  # the fit's own settings stay those of the run that fitted the head
        fitted = Path(head_dir) / "train_config.json"
        config = {**(json.loads(fitted.read_text(encoding="utf-8")) if fitted.is_file() else {}),
                  "calibrated": {k: config[k] for k in ("min_precision", "max_false_store", "max_skip_recall_loss")}}
    (output / "train_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
    (output / EVAL_FILE).write_text(json.dumps({"valid": valid, "test": test}, indent=1), encoding="utf-8")
    log(f"min_key_prob {threshold}, skip_nothing_prob {skip}: validation P {valid['precision']:.3f} R {valid['recall']:.3f} "
        f"FS {valid['false_store_rate']:.3f}; test P {test['precision']:.3f} R {test['recall']:.3f} "
        f"FS {test['false_store_rate']:.3f} ({time.perf_counter() - t0:.0f} s)")
    return {"threshold": threshold, "skip_nothing_prob": skip, "valid": valid, "test": test, "nothing": NOTHING}


def run_train_intent(cfg: IntentTrainConfig, writer: str = "default", base: str | None = None,
                     output: Path | None = None, log=None, head: str | None = None,
                     reuse: Path | None = None) -> dict:
    """`ohlora train intent`: load the chat's base with the writer adapter (`writer`: "default",
    the one shipped for the base, or a directory), then `train_intent` into `output`
    [default: $OHLORA_HOME/intent/<encoder base>]. `head` ("default": the shipped one, or a
    directory): calibrate that head again instead of fitting a new one; `reuse`: an earlier
    calibration whose writer decodes are taken where they apply."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    spec = resolve_base(base or "gemma-3-270m")
    path = resolve_named(writer, shipped_writer_adapter(spec.name), "writer adapter")
    if path is None:
        raise OhloraError(f"no writer adapter for {spec.name}: pass --writer DIR (from `ohlora train writer`)")
    set_cpu_threads()
    log(f"Loading {spec.name} with the writer {path.name} ...")
    model, tok = load_base(spec)
    _, w = attach_writer(model, tok, path)
    if not isinstance(w, ConstrainedWriter):
        raise OhloraError(f"{path} has no writer_policy.yaml: the key-intent head needs the writer's key schema")
    writer_cfg = WriterTrainConfig(base=spec.name).resolved()
    output = Path(output or home_dir() / "intent" / cfg.base)
    head_dir = resolve_intent(head) if head else None
    if head and head_dir is None:
        raise OhloraError("no key-intent head is shipped for this encoder: pass --head DIR")
    return train_intent(cfg, writer_cfg, output, w, synonyms=load_synonyms(Path(writer_cfg.synonyms)), log=log,
                        head_dir=head_dir, writer_id=adapter_fingerprint(path), reuse=reuse)
