"""`ohlora bench`: the original's time/memory comparison table, for our stack.

Each cell runs in its own child process (`python -m ohlora.bench.table VARIANT`), because peak
memory of a process only ever grows: a baseline and an optimized run in one process could not be
told apart. Rows: inference (25 answers) and fine-tuning (20 pairs x 3 epochs, batch 4), each with
the plain Hugging Face path and ohlora's path; memory is peak RSS on CPU, max allocated on CUDA.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import click

from ohlora.bench.report import report
from ohlora.config import ChatConfig
from ohlora.datasets.sft import load_dataset
from ohlora.decoding.generator import HFGenerator
from ohlora.models import add_lora, load_base, resolve_base, set_cpu_threads
from ohlora.paths import bundled
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat
from ohlora.runtime import build_runtime
from ohlora.training.llm_config import load_train_config
from ohlora.training.sft_batches import collate, encode_row

VARIANTS = {
    "infer-baseline": "inference, 25 answers: HF generate, full head",
    "infer-ohlora": "inference, 25 answers: ohlora FastGenerator",
    "train-baseline": "fine-tuning, 20 pairs x 3 epochs, batch 4: full logits, random batches",
    "train-ohlora": "fine-tuning, 20 pairs x 3 epochs, batch 4: answer-only head, grouped",
}


def peak_memory_mb() -> float:
    # lazy: torch loads only when this runs
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_variant(variant: str, base: str, adapter: str) -> dict:
    # lazy: torch loads only when this runs
    import torch

    set_cpu_threads()
    valid = load_dataset(Path(bundled("data", "sft", "valid.csv")))
    if variant.startswith("infer"):

        rt = build_runtime(ChatConfig(base=base, adapter=adapter, memory_encoder="base",
                                      generator="hf" if variant == "infer-baseline" else "fast"), log=lambda m: None)
        gen, fmt = rt.engine.generator, rt.engine.prompt_format
        assert variant != "infer-baseline" or isinstance(gen, HFGenerator)
        rows = valid[:25]
        torch.manual_seed(0)
        t, tokens = time.perf_counter(), 0
        for r in rows:
            tokens += gen.generate(r.prompt(fmt, rt.card), stop_phrase=fmt.stop_phrase, max_new_tokens=80,
                                   temperature=0).n_tokens
        return {"seconds": time.perf_counter() - t, "tokens": tokens, "peak_mb": peak_memory_mb()}
    # lazy: peft, torch load only when this runs
    from peft import LoraConfig

    from ohlora.training.losses import answer_only_loss, full_logits_loss, lm_head_of

    cfg = load_train_config(base=base).resolved()
    model, tok = load_base(resolve_base(base), device="cuda" if torch.cuda.is_available() else "cpu",
                           dtype=torch.float32)
    model = add_lora(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                       target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")).train()
    rows = random.Random(0).sample(load_dataset(Path(cfg.train_file)), 20)
    feats = [encode_row(r, tok, PromptFormat(), PersonaCard.load(), cfg.max_length) for r in rows]
    head, softcap = lm_head_of(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    rng = random.Random(1)
    t = time.perf_counter()
    for _ in range(3):
        order = feats[:]
        rng.shuffle(order)
        if variant == "train-ohlora":
            order.sort(key=lambda f: f["length"])  # one mega-batch: 20 rows grouped by length
        for i in range(0, len(order), 4):
            batch = {k: v.to(model.device) for k, v in collate(order[i:i + 4], tok.pad_token_id).items()}
            loss = (answer_only_loss(model, batch, head, softcap) if variant == "train-ohlora"
                    else full_logits_loss(model, batch))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return {"seconds": time.perf_counter() - t, "steps": 15, "peak_mb": peak_memory_mb()}


def run_table(base: str, adapter: str, as_json: bool, out: Path | None) -> dict:
    # lazy: torch loads only when this runs
    import torch

    device = f"CUDA ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"
    results = {}
    for variant in VARIANTS:
        click.echo(f"running {variant} ...", err=True)
        proc = subprocess.run([sys.executable, "-m", "ohlora.bench.table", variant, base, adapter],
                              capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        if proc.returncode != 0:
            raise click.ClickException(f"{variant} failed: {proc.stderr.strip().splitlines()[-1:]}")
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    try:
        import unsloth  # lazy: an optional GPU library, probed  # noqa: F401
        unsloth_note = "Unsloth is installed but not wired in as a variant yet."
    except Exception:
        unsloth_note = "Unsloth: not installed here (it needs CUDA), so no Unsloth row."

    def pct(a, b):  # reduction: positive = ohlora uses less
        return f"{100 * (1 - b / a):.0f}%"

    lines = [f"device: {device}; model {base} + LoRA; times exclude model loading", "",
             "| task | baseline time (s) | ohlora time (s) | time reduction | baseline peak memory (MiB) | "
             "ohlora peak memory (MiB) | memory reduction |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, (b, o) in {"inference, 25 answers": ("infer-baseline", "infer-ohlora"),
                         "fine-tuning, 20 pairs x 3 epochs (batch 4)": ("train-baseline", "train-ohlora")}.items():
        rb, ro = results[b], results[o]
        lines.append(f"| {task} | {rb['seconds']:.1f} | {ro['seconds']:.1f} | {pct(rb['seconds'], ro['seconds'])} | "
                     f"{rb['peak_mb']:.0f} | {ro['peak_mb']:.0f} | {pct(rb['peak_mb'], ro['peak_mb'])} |")
    lines += ["", "Baseline: plain Hugging Face (generate with the full head; full-logits loss, random batches). "
              "ohlora: FastGenerator (restricted head, lean loop); answer-only head, length-grouped batches.",
              unsloth_note]
    report(lines, out, as_json, results)
    return results


if __name__ == "__main__":
    print(json.dumps(run_variant(sys.argv[1], sys.argv[2], sys.argv[3])))
