"""`ohlora train prefs`: preference tuning (DPO) of the chat adapter on judged answer pairs.

Why not TRL's DPOTrainer: it computes logits for every position of every row, and with a 262k
vocabulary that head is most of a CPU step. Here the backbone runs once over chosen and rejected
rows together and the head only where an answer token is predicted (as `train llm` does).
The reference model is the starting adapter itself: its log-probabilities are computed once,
before training (no second model in memory). `nll_weight` > 0 adds the chosen answer's mean
token loss (RPO, Pang et al. 2024), which keeps the format (stop phrase, tags) in place.

Loss per pair, with margins m = log pi(y) - log pi_ref(y) summed over answer tokens:
    -log sigmoid(beta * (m_chosen - m_rejected))  +  nll_weight * NLL(chosen) / tokens
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml
from tqdm import tqdm

from ohlora.datasets.jsonlines import read_jsonl
from ohlora.decoding.head import lm_head_of
from ohlora.errors import OhloraError
from ohlora.models import load_base, resolve_base, set_cpu_threads, shipped_adapter
from ohlora.paths import adapters_dir, bundled, move_aside
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.settings import load_config
from ohlora.training.llm import load_trainable_adapter
from ohlora.datasets.prompts import prompt_from
from ohlora.training.sft_batches import IGNORE, collate, encode_row


@dataclass(frozen=True)
class PrefTrainConfig:
    base: str = "gemma-3-270m"
    adapter: str = "default"
    """The chat adapter to start from (and the reference): "default" (shipped) or a directory."""
    pairs_file: str = ""
    """Preference pairs JSONL (default: the bundled set, data/preferences/pairs.jsonl)."""
    output: str = ""
    """Adapter directory (default: $OHLORA_HOME/adapters/<name>)."""
    name: str = "ohlora-prefs"
    beta: float = 0.1
    nll_weight: float = 0.2
    epochs: float = 1.0
    learning_rate: float = 2e-5
    batch_size: int = 4
    """Pairs per step (each is a chosen and a rejected row)."""
    max_length: int = 256
    warmup_ratio: float = 0.1
    seed: int = 42
    threads: int = 0
    limit: int = 0
    """Train on the first N pairs only (0: all)."""

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        checks = [(not bad, f"{', '.join(bad)} must be finite"), (self.beta > 0, "beta must be > 0"),
                  (self.nll_weight >= 0, "nll_weight must be >= 0"), (self.epochs > 0, "epochs must be > 0"),
                  (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
                  (self.batch_size >= 1, "batch_size must be >= 1"), (self.max_length >= 16, "max_length must be >= 16"),
                  (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"), (self.limit >= 0, "limit must be >= 0")]
        for ok, msg in checks:
            if not ok:
                raise OhloraError(f"prefs config: {msg}")

    def resolved(self) -> "PrefTrainConfig":
        return replace(self, pairs_file=self.pairs_file or bundled("data", "preferences", "pairs.jsonl"),
                       output=self.output or str(adapters_dir() / self.name))

    def as_dict(self) -> dict:
        return asdict(self)


def load_pref_config(path: Path | None = None, **overrides) -> PrefTrainConfig:
    """Defaults, then the YAML file (a `train_prefs:` section or top-level keys), then flags."""
    return load_config(PrefTrainConfig, path, "train_prefs", None, what="prefs config", **overrides)


def read_pairs(path: Path) -> list[dict]:
    """The pairs of a JSONL file, each checked (prompt fields, chosen, rejected) with a one-line error."""
    if not path.is_file():
        raise OhloraError(f"no preference pairs at {path}: build them with `ohlora data pairs` and pass --pairs")
    pairs = read_jsonl(path)
    for i, p in enumerate(pairs, 1):
        where = f"{path} line {i}"
        if not isinstance(p, dict):
            raise OhloraError(f"{where}: not a JSON object")
        prompt_from(p, where)
        if any(not isinstance(p.get(k), str) or not p[k].strip() for k in ("chosen", "rejected")):
            raise OhloraError(f"{where}: needs a chosen and a rejected answer")
    if not pairs:
        raise OhloraError(f"{path}: no pairs")
    return pairs


def encode_pair(pair: dict, tok, fmt, card, max_length: int) -> dict | None:
    """Token ids and answer-only labels of the chosen and the rejected row (None if either has no
    answer token left after truncation), and `prefix`: the ids of the persona section both rows
    open with (() when the tokenizer does not split there), which a batch computes once."""

    p = prompt_from(pair, f"pair {pair.get('id')}")
    row = p.row(pair["chosen"])
    chosen = encode_row(row, tok, fmt, card, max_length)
    rejected = encode_row(p.row(pair["rejected"]), tok, fmt, card, max_length)
    if chosen is None or rejected is None:
        return None
    facts = card.facts(row.facts_date()) if fmt.persona_template else None
    context = fmt.context(None, facts, None)
    prefix = tuple(tok(context)["input_ids"]) if context else ()
    n = len(prefix)
    if not n or any(tuple(f["input_ids"][:n]) != prefix or all(x == IGNORE for x in f["labels"][n:])
                    for f in (chosen, rejected)):
        prefix = ()
    return {"chosen": chosen, "rejected": rejected, "prefix": prefix}


def split_prefix(feats: list[dict]) -> tuple[list[int], list[dict]]:
    """(the shared prefix ids, the pairs' rows without it) for pairs of one prefix."""
    prefix = list(feats[0]["prefix"])
    n = len(prefix)

    def cut(f):
        return {"input_ids": f["input_ids"][n:], "labels": f["labels"][n:], "length": f["length"] - n}

    return prefix, [{"chosen": cut(f["chosen"]), "rejected": cut(f["rejected"])} for f in feats]


def batches_by_prefix(feats: list[dict], size: int, rng) -> list[list[int]]:
    """Shuffled batches of pair indices, each within one prefix group (so its prefix runs once)."""
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(feats):
        groups.setdefault(f["prefix"], []).append(i)
    out = []
    for idx in groups.values():
        rng.shuffle(idx)
        out += [idx[i:i + size] for i in range(0, len(idx), size)]
    rng.shuffle(out)
    return out


def sequence_logps(model, batch: dict, head, softcap, prefix: list[int] | None = None) -> tuple:
    """(summed log-prob of each row's answer tokens (B,), answer tokens per row (B,)).

    With `prefix`, every row of `batch` continues those ids: the prefix runs once (one row, with
    gradients) and its keys and values are repeated for the B rows, which is exact and saves the
    persona section's B-1 copies (~80 of ~130 tokens a row here)."""
    # lazy: torch loads only when this runs
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    no_positions = torch.empty(0, dtype=torch.long, device=ids.device)
    if prefix:
        pre = torch.tensor([prefix], dtype=torch.long, device=ids.device)  # (1, P)
        first = model(input_ids=pre, use_cache=True, logits_to_keep=no_positions)
        cache = first.cache if hasattr(first, "cache") else first.past_key_values  # transformers renamed it
        cache.batch_repeat_interleave(ids.shape[0])  # each layer's keys/values: (B, heads, P, d)
        full_mask = torch.cat([torch.ones(ids.shape[0], pre.shape[1], dtype=mask.dtype, device=ids.device), mask], 1)
        given = {"cache" if hasattr(first, "cache") else "past_key_values": cache}
        out = model(input_ids=ids, attention_mask=full_mask, use_cache=True, output_hidden_states=True,
                    logits_to_keep=no_positions, **given)
    else:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=no_positions,
                    use_cache=False)
    hidden = out.hidden_states[-1]  # (B, T, H)
    target = batch["labels"][:, 1:]  # (B, T-1)
    keep = target != IGNORE  # (B, T-1)
    logits = head(hidden[:, :-1][keep]).float()  # (N, V): answer positions only
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    token_logp = torch.log_softmax(logits, -1).gather(-1, target[keep][:, None])[:, 0]  # (N,)
    rows = torch.arange(target.shape[0], device=target.device)[:, None].expand_as(target)[keep]  # (N,)
    summed = torch.zeros(target.shape[0], device=target.device).index_add(0, rows, token_logp)  # (B,)
    return summed, keep.sum(1)


def pair_batch(feats: list[dict], pad_id: int) -> dict:
    """Chosen rows first, then rejected: one (2B, T) batch."""
    return collate([f["chosen"] for f in feats] + [f["rejected"] for f in feats], pad_id)


def pair_logps(model, feats: list[dict], pad_id: int, head, softcap):
    """sequence_logps of the pairs' chosen rows, then rejected ones; their shared persona prefix
    (when every pair has the same one) runs once."""
    if feats[0]["prefix"] and all(f["prefix"] == feats[0]["prefix"] for f in feats):
        prefix, rest = split_prefix(feats)
        return sequence_logps(model, pair_batch(rest, pad_id), head, softcap, prefix)
    return sequence_logps(model, pair_batch(feats, pad_id), head, softcap)


def dpo_loss(policy, ref, counts, beta: float, nll_weight: float):
    """policy, ref: (2B,) summed log-probs (chosen first); counts: (2B,) answer tokens.
    Returns (loss, chosen-rejected reward margins (B,))."""
    # lazy: torch loads only when this runs
    import torch.nn.functional as F

    b = policy.shape[0] // 2
    margin = (policy[:b] - ref[:b]) - (policy[b:] - ref[b:])  # (B,)
    loss = -F.logsigmoid(beta * margin).mean()
    if nll_weight:
        loss = loss + nll_weight * (-(policy[:b] / counts[:b].clamp(min=1))).mean()
    return loss, beta * margin.detach()


def train_prefs(cfg: PrefTrainConfig, command: str = "", overwrite: bool = False, log=print) -> Path:
    """Train; returns the adapter directory (prompt format, persona card and head vocab copied
    from the starting adapter, plus train_config.yaml and prefs_log.csv)."""
    # lazy: torch, transformers load only when this runs
    import torch
    from transformers import get_cosine_schedule_with_warmup

    cfg = cfg.resolved()
    spec = resolve_base(cfg.base)
    start = shipped_adapter(spec.name) if cfg.adapter == "default" else Path(cfg.adapter).expanduser()
    if start is None or not (Path(start) / "adapter_config.json").is_file():
        raise OhloraError(f"start adapter {cfg.adapter!r} is not an adapter directory")
    pairs = read_pairs(Path(cfg.pairs_file))[:cfg.limit or None]
    out = Path(cfg.output)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OhloraError(f"{out} is not empty: pass --overwrite (the old one is moved aside) or choose --output")
        log(f"moved the previous {out.name} to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    set_cpu_threads(cfg.threads or None)
    fmt, card = PromptFormat.load(Path(start)), PersonaCard.load(Path(start) / "persona.yaml")
    model, tok = load_base(spec, device="cpu", dtype=torch.float32)
    model.config.use_cache = False
    model = load_trainable_adapter(model, Path(start))
    head, softcap = lm_head_of(model)
    feats = [f for f in (encode_pair(p, tok, fmt, card, cfg.max_length) for p in pairs) if f is not None]
    if len(feats) < len(pairs):
        log(f"skipped {len(pairs) - len(feats)} pairs whose answers did not fit max_length={cfg.max_length}")

    # every step's batch, drawn up front: the reference pass then computes only the pairs that train
    rng = random.Random(cfg.seed)
    per_epoch = len(batches_by_prefix(feats, cfg.batch_size, random.Random(0)))
    steps = max(1, math.ceil(per_epoch * cfg.epochs))
    epochs: list[list[list[int]]] = []
    while sum(map(len, epochs)) < steps:
        epochs.append(batches_by_prefix(feats, cfg.batch_size, rng))
    plan = [idx for epoch in epochs for idx in epoch][:steps]
    first = plan[:len(epochs[0])]  # the first epoch (or the part of it that trains) holds every pair used

    # the reference: the starting adapter, once, dropout off; ref[i] = (chosen, rejected) of pair i
    model.eval()
    ref = torch.zeros(len(feats), 2)
    with torch.no_grad():
        for idx in tqdm(first, desc="reference log-probs", file=sys.stderr):
            lp, _ = pair_logps(model, [feats[i] for i in idx], tok.pad_token_id, head, softcap)
            ref[idx] = torch.stack([lp[:len(idx)], lp[len(idx):]], 1)
    used = len({i for idx in plan for i in idx})
    log(f"reference log-probs of the {used} of {len(feats)} pairs that train computed "
        f"({sum(bool(feats[i]['prefix']) for idx in first for i in idx)} with a shared persona prefix)")

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    log_path = out / "prefs_log.csv"
    log_path.write_text("step,loss,reward_margin,accuracy,elapsed_s\n", encoding="utf-8")
    model.eval()  # dropout stays off in training too (TRL's disable_dropout): policy and reference agree at step 0
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc="preference steps", file=sys.stderr)
    for step in range(1, steps + 1):
        idx = plan[step - 1]
        policy, counts = pair_logps(model, [feats[i] for i in idx], tok.pad_token_id, head, softcap)
        r = ref[idx]
        loss, margin = dpo_loss(policy, torch.cat([r[:, 0], r[:, 1]]), counts, cfg.beta, cfg.nll_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        with log_path.open("a", encoding="utf-8") as f:
            f.write(f"{step},{loss.item():.4f},{margin.mean().item():.4f},{(margin > 0).float().mean().item():.3f},"
                    f"{time.perf_counter() - t0:.1f}\n")
        bar.update(1)
        if step % 10 == 0 or step == steps:
            bar.set_postfix(loss=f"{loss.item():.4f}", margin=f"{margin.mean().item():.3f}")
    bar.close()
    model.save_pretrained(out)
    for name in ("prompt_format.yaml", "persona.yaml", "head_vocab.json", "NOTICE", "GEMMA_TERMS.html"):
        if (Path(start) / name).is_file():
            shutil.copy(Path(start) / name, out / name)
    (out / "train_config.yaml").write_text(
        yaml.safe_dump({"command": command, "start_adapter": str(start), "config": cfg.as_dict()},
                       allow_unicode=True, sort_keys=False), encoding="utf-8")
    log(f"saved the adapter to {out} ({time.perf_counter() - t0:.0f} s, {steps} steps)")
    return out
