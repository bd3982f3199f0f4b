"""`ohlora bench train`: training step time, the plain Hugging Face path vs ohlora's path.

- baseline: logits for every position (the model's own loss), batches in random order (the
  Trainer default), each padded to its longest row;
- ohlora: the LM head only at answer positions, batches grouped by length (less padding).

Both run the same model (same LoRA), the same rows split into the same number of steps, in the
same process, alternating step by step so that background load hits both alike. A step is
forward + backward + AdamW update. A second table isolates the answer-only head: both paths on
identical batches, with the loss of each to show they agree.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import click

from ohlora.bench.report import report
from ohlora.datasets.sft import load_dataset
from ohlora.models import add_lora, load_base, resolve_base, set_cpu_threads
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.training.llm_config import load_train_config
from ohlora.training.sft_batches import collate, encode_row


def run_train_bench(base: str, batch_size: int, steps: int, threads: int | None, as_json: bool,
                    out: Path | None = None) -> dict:
    # lazy: peft, torch load only when this runs
    import torch
    from peft import LoraConfig

    from ohlora.training.losses import answer_only_loss, check_answer_only_path, full_logits_loss, lm_head_of

    set_cpu_threads(threads)
    cfg = load_train_config(base=base).resolved()
    model, tok = load_base(resolve_base(base), device="cpu", dtype=torch.float32)
    model = add_lora(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                       target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM"))
    model.train()
    fmt, card = PromptFormat(), PersonaCard.load()
    rng = random.Random(0)
    rows = rng.sample(load_dataset(cfg.train_file), batch_size * (steps + 1))
    feats = [f for f in (encode_row(r, tok, fmt, card, cfg.max_length) for r in rows) if f is not None]
    warm, feats = feats[:batch_size], feats[batch_size:]
    chunk = lambda fs: [collate(fs[i:i + batch_size], tok.pad_token_id) for i in range(0, len(fs), batch_size)]  # noqa: E731
    random_batches = chunk(feats)  # the rows in random order
    grouped_batches = chunk(sorted(feats, key=lambda f: f["length"]))  # the same rows, grouped by length
    head, softcap = lm_head_of(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    loss_fns = {"baseline": lambda b: full_logits_loss(model, b),
                "ohlora": lambda b: answer_only_loss(model, b, head, softcap)}

    def step(path, batch):
        t = time.perf_counter()
        loss = loss_fns[path](batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t, loss.item()

    for path in loss_fns:  # warm-up
        step(path, chunk(warm)[0])
    full = {"baseline": [], "ohlora": []}
    head_only = {"baseline": [], "ohlora": []}
    loss_gap = 0.0
    n = len(random_batches)
    with click.progressbar(length=4 * n, label="bench train", file=click.get_text_stream("stderr")) as bar:
        for i in range(n):
            order = ("baseline", "ohlora") if i % 2 == 0 else ("ohlora", "baseline")
            for path in order:  # the whole path: its loss and its batching
                full[path].append(step(path, random_batches[i] if path == "baseline" else grouped_batches[i])[0])
                bar.update(1)
            for path in order:  # the head alone: identical batch for both
                head_only[path].append(step(path, random_batches[i])[0])
                bar.update(1)
            loss_gap = max(loss_gap, check_answer_only_path(model, random_batches[i]))  # same weights, no grad

    def pad_share(batches):
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        return 1 - real / sum(b["input_ids"].numel() for b in batches)

    answer = sum(int((b["labels"][:, 1:] != -100).sum()) for b in random_batches)
    real = sum(int(b["attention_mask"].sum()) for b in random_batches)
    base_s, ours_s = statistics.mean(full["baseline"]), statistics.mean(full["ohlora"])
    result = {"baseline_s": round(base_s, 4), "ohlora_s": round(ours_s, 4), "ratio": round(base_s / ours_s, 3)}
    head_ratio = statistics.mean(head_only["baseline"]) / statistics.mean(head_only["ohlora"])
    lines = [
        f"model {base}, LoRA r={cfg.lora_rank} on {','.join(cfg.lora_targets)}, batch {batch_size}, "
        f"{n} steps per path over the same {len(feats)} rows, threads {torch.get_num_threads()}",
        f"answer tokens {100 * answer / real:.0f}% of real tokens; padding {100 * pad_share(random_batches):.0f}% "
        f"(random batches) vs {100 * pad_share(grouped_batches):.0f}% (grouped by length)",
        "", "| path | mean step (s) | steps (s) |", "| --- | --- | --- |",
    ]
    for p, label in (("baseline", "baseline: full logits, random batches"), ("ohlora", "ohlora: answer-only head, grouped")):
        lines.append(f"| {label} | {statistics.mean(full[p]):.3f} | {', '.join(f'{t:.2f}' for t in full[p])} |")
    lines += [f"ratio (baseline / ohlora): {result['ratio']:.2f}x", "",
              f"answer-only head alone, identical batches: {head_ratio:.2f}x (max loss difference {loss_gap:.2e})"]
    report(lines, out, as_json, result)
    return result
