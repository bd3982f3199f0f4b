"""A small LoRA for one helper task on the chat's base model: the memory writer, the summarizer.

Each task has its own prompt -> answer rows. Loss is on the answer only (the answer + EOS, the
LM head applied only there). The validation loss is logged after every epoch, and the epoch with
the lowest one is what stays saved in the output directory.
"""

from __future__ import annotations

import csv
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ohlora.errors import OhloraError
from ohlora.models import add_lora, load_base, resolve_base, set_cpu_threads
from ohlora.training.sft_batches import IGNORE, collate


@dataclass
class TaskFit:
    best_epoch: int
    valid_loss: float
    minutes: float
    log_rows: list[dict] = field(default_factory=list)


def encode_task_row(prompt: str, target: str, tokenizer) -> dict:
    """input_ids = prompt + target + EOS; labels IGNORE over the prompt (tokenized on its own, as at inference)."""

    p = tokenizer(prompt)["input_ids"]
    a = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": p + a, "labels": [IGNORE] * len(p) + a}


def batches(feats: list[dict], batch_size: int, rng: random.Random | None):
    """Shuffled (or in order) batches of rows of similar length: little padding."""
    order = list(range(len(feats)))
    if rng is not None:
        rng.shuffle(order)
    chunks = [order[i:i + batch_size * 8] for i in range(0, len(order), batch_size * 8)]
    out = []
    for chunk in chunks:
        chunk.sort(key=lambda i: len(feats[i]["input_ids"]))
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        rng.shuffle(out)
    return out


def task_model(base: str, rank: int, alpha: int, dropout: float, targets, seed: int, threads: int = 0):
    """(spec, model with a fresh LoRA, tokenizer) for training on CPU in fp32."""
    # lazy: peft, torch, transformers load only when this runs
    import torch
    from peft import LoraConfig
    from transformers import set_seed

    set_seed(seed)
    set_cpu_threads(threads or None)
    spec = resolve_base(base)
    model, tok = load_base(spec, device="cpu", dtype=torch.float32)
    model.config.use_cache = False
    try:
        model = add_lora(model, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                                           target_modules=list(targets), task_type="CAUSAL_LM"))
    except ValueError as e:
        raise OhloraError(f"LoRA targets {list(targets)} do not fit {base}: {e}") from e
    return spec, model, tok


def fit_task_lora(model, tok, train_feats: list[dict], valid_feats: list[dict], out: Path, *, epochs: int,
                  learning_rate: float, batch_size: int, seed: int, name: str, log=None) -> TaskFit:
    """AdamW with a short warm-up and linear decay; saves the adapter at every new best
    validation loss and reloads the best one at the end (the model is left in eval mode)."""
    # lazy: torch loads only when this runs
    import torch

    from ohlora.training.losses import answer_only_loss, lm_head_of

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    head, softcap = lm_head_of(model)
    rng = random.Random(seed)
    total = len(batches(train_feats, batch_size, None)) * epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / total))

    def valid_loss() -> float:
        if not valid_feats:
            return float("nan")
        model.eval()
        losses, n = 0.0, 0
        with torch.no_grad():
            for b in batches(valid_feats, batch_size, None):
                batch = collate([valid_feats[i] for i in b], tok.pad_token_id)
                losses += answer_only_loss(model, batch, head, softcap).item() * len(b)
                n += len(b)
        model.train()
        return losses / n

    t0 = time.perf_counter()
    rows, best, step = [], None, 0
    model.train()
    for epoch in range(1, epochs + 1):
        bar = tqdm(batches(train_feats, batch_size, rng), desc=f"train {name}, epoch {epoch}/{epochs}", file=sys.stderr)
        for b in bar:
            batch = collate([train_feats[i] for i in b], tok.pad_token_id)
            loss = answer_only_loss(model, batch, head, softcap)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
            rows.append({"step": step, "epoch": epoch, "loss": round(loss.item(), 6), "valid_loss": "",
                         "elapsed_s": round(time.perf_counter() - t0, 1)})
        vl = valid_loss()
        rows[-1]["valid_loss"] = round(vl, 6)
        log(f"epoch {epoch}: validation loss {vl:.4f}")
        if best is None or not vl >= best[0]:  # NaN (no validation rows): keep the last epoch
            best = (vl, epoch)
            model.save_pretrained(out)  # the best epoch so far is what is kept
    if best[1] != epochs:
        # lazy: peft, safetensors load only when this runs
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(Path(out) / "adapter_model.safetensors")))
    model.eval()
    return TaskFit(best[1], best[0], (time.perf_counter() - t0) / 60, rows)


def write_train_log(out: Path, rows: list[dict]) -> Path:
    path = Path(out) / "train_log.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["step", "epoch", "loss", "valid_loss", "elapsed_s"])
        w.writeheader()
        w.writerows(rows)
    return path
