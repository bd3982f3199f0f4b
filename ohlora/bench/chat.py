"""`ohlora bench chat`: the decode paths side by side in one process, on the same model + chat
adapter and the same prompts, greedy:

- plain HF `generate` (fp32, full head): the baseline;
- ohlora's FastGenerator with its PyTorch step (LeanGemma3) and with its native step (C);
- llama.cpp through llama-cpp-python, where the `llamacpp` extra is installed: the plain exported
  F16 file (full vocabulary, what any llama.cpp user runs), and the engine files cut to ohlora's
  head (`--engine llamacpp`, F16 and Q8_0).

For each: decode tokens/s (answer tokens after the first, prompt time taken out), the latency of
a 30-token answer (prompt included), identical greedy answers with the baseline, teacher-forced
top-1 agreement with the full fp32 model along validation answers (each path's own one-token
step), and the bandwidth limit: bytes its weights put through per token over the read bandwidth
measured here on the same number of threads.
"""

from __future__ import annotations

import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from ohlora.bench.report import report
from ohlora.config import ChatConfig
from ohlora.datasets.sft import load_dataset, spread_rows
from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.generator import HFGenerator
from ohlora.decoding.llamacpp import LlamaCppGenerator
from ohlora.evaluation.conversation import load_dialogues
from ohlora.export.engine_file import engine_gguf
from ohlora.models import resolve_base, use_adapter
from ohlora.paths import bundled
from ohlora.runtime import build_runtime, resolve_adapter
from ohlora.store.conversations import Turn


@dataclass
class DecodePath:
    """One way to answer: `gen` has FastGenerator's generate(); `forced(prompt, answer_ids)`
    returns its top-1 full-vocabulary id before each answer token; `reset()` drops its cache."""

    name: str
    gen: object
    bytes_per_token: int
    forced: object = None
    reset: object = None
    threads: object = None  # a context manager factory that sets the decode threads (baseline)
    stats: dict = field(default_factory=dict)


# -- the bandwidth limit ---------------------------------------------------------------------------
def read_bandwidth(threads: int, mbytes: int = 512, reps: int = 5) -> float:
    """Bytes per second one pass of reading a large fp32 buffer reaches here on `threads`
    threads (the best of `reps`): what a matrix-vector product can at most stream."""
    # lazy: torch loads only when this runs
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        buf = torch.ones(mbytes * 2**20 // 4)
        buf.sum()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            buf.sum()
            best = min(best, time.perf_counter() - t)
        return buf.numel() * 4 / best
    finally:
        torch.set_num_threads(old)


def lean_bytes(gen) -> int:
    """Weight bytes a FastGenerator step reads: the lean decoder's matrices and its head."""
    lean = gen.lean()
    mats = sum(L[k].numel() * L[k].element_size() for L in lean.layers for k in ("qkv", "o", "gu", "down"))
    native = gen.native()
    head = native.head if native is not None else gen.weight
    return mats + head.numel() * head.element_size()


def hf_bytes(model, adapter: str | None) -> int:
    """Weight bytes HF generate reads per token: every parameter but the embedding's lookup (its
    matrix is read whole as the tied head), the active adapter's LoRA and no other adapter's."""
    total = 0
    for name, p in model.named_parameters():
        if "lora_" in name and (adapter is None or f".{adapter}." not in name):
            continue
        total += p.numel() * p.element_size()
    return total


def gguf_bytes(path: Path) -> int:
    """Every tensor of a GGUF is read once per token (Gemma's token_embd is also its output head)."""
    # lazy: gguf loads only when this runs
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors)


# -- the measurements ------------------------------------------------------------------------------
def timed(path: DecodePath, prompt: str, stop: str, max_new_tokens: int):
    """(seconds, result) of one answer from an empty cache."""
    if path.reset:
        path.reset()
    with path.threads() if path.threads else _nothing():
        t = time.perf_counter()
        res = path.gen.generate(prompt, stop_phrase=stop, max_new_tokens=max_new_tokens, temperature=0)
        return time.perf_counter() - t, res


@contextmanager
def _nothing():
    yield


def measure(paths: list[DecodePath], texts: list[str], stop: str, max_new_tokens: int, label: str = "bench chat"):
    """Fills each path's stats: decode tokens/s, 30-token latency, answers. The paths take
    turns on every prompt (the order rotates), so a slower moment of the machine hits all."""
    for p in paths:  # warm-up
        timed(p, texts[0], stop, 4)
        p.stats.update(decode_s=0.0, decode_tokens=0, answers=[], t30=[])
    with click.progressbar(list(enumerate(texts)), label=label, file=click.get_text_stream("stderr")) as bar:
        for i, text in bar:
            order = paths[i % len(paths):] + paths[:i % len(paths)]
            for p in order:
                first, _ = timed(p, text, stop, 1)  # the prompt and the first token
                whole, res = timed(p, text, stop, max_new_tokens)
                p.stats["decode_s"] += max(whole - first, 1e-9)
                p.stats["decode_tokens"] += max(res.n_tokens - 1, 0)
                p.stats["answers"].append(res.text)
                if i < 5:  # a 30-token answer: the stop phrase disabled
                    p.stats["t30"].append(timed(p, text, "\x00never", 30)[0])


def fast_forced(gen):
    """Top-1 ids along a forced answer through a FastGenerator's own one-token step."""
    def forced(prompt: str, answer_ids: list[int]) -> list[int]:
        gen.prefix.clear()
        out = []
        with gen.session(prompt, len(answer_ids) + 1) as s:
            for t in answer_ids:
                row = int(s.logits().argmax())
                out.append(row if s.vocab is None else int(s.vocab[row]))
                s.advance(t)
        return out
    return forced


def llamacpp_forced(gen):
    """Top-1 ids along a forced answer through llama.cpp's one-token decode."""
    def forced(prompt: str, answer_ids: list[int]) -> list[int]:
        ids = gen.tokenizer(prompt)["input_ids"]
        gen._seen = []
        logits = gen._start(ids, len(answer_ids) + 1)
        out = []
        for t in answer_ids:
            row = int(logits.argmax())
            out.append(row if gen.ids is None else int(gen.ids[row]))
            logits = gen._step(t)
        return out
    return forced


def reference_top1(model, tok, adapter, prompt_ids: list[int], answer_ids: list[int]) -> list[int]:
    """The full fp32 model's top-1 before each answer token (HF forward, full head)."""
    # lazy: torch loads only when this runs
    import torch

    with torch.inference_mode(), use_adapter(model, adapter):
        ids = torch.tensor([prompt_ids + answer_ids])
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:ids.shape[1] - 1]  # (A, V)
    return logits.argmax(-1).tolist()


def agreement(paths: list[DecodePath], model, tok, adapter, rows, fmt, card) -> None:
    """Teacher-forced top-1 agreement of each path (with `forced`) with the full fp32 model."""
    same = {p.name: 0 for p in paths if p.forced}
    total = 0
    for r in rows:
        prompt = r.prompt(fmt, card)
        prompt_ids = tok(prompt)["input_ids"]
        answer_ids = tok(fmt.target(r.output), add_special_tokens=False)["input_ids"]
        ref = reference_top1(model, tok, adapter, prompt_ids, answer_ids)
        total += len(ref)
        for p in paths:
            if p.forced:
                same[p.name] += sum(a == b for a, b in zip(p.forced(prompt, answer_ids), ref))
    for p in paths:
        p.stats["agreement"] = same[p.name] / total if p.forced else None


# -- the paths -------------------------------------------------------------------------------------
def llamacpp_paths(adapter_dir, base_name, ids, tok, embed, threads: int, log) -> tuple[list[DecodePath], str]:
    """The llama.cpp anchors, or none and a note why."""
    try:
        import llama_cpp  # lazy: an optional extra, probed  # noqa: F401
    except ImportError:
        return [], "llama.cpp: skipped (llama-cpp-python is not installed: pip install 'ohlora[llamacpp]')"

    out = []
    for label, quant, cut in (("llama.cpp F16, full vocabulary (exported file)", "f16", False),
                              ("llama.cpp F16, ohlora's head (--engine llamacpp)", "f16", True),
                              ("llama.cpp Q8_0, ohlora's head", "q8_0", True)):
        path = engine_gguf(adapter_dir, base_name, ids if cut else None, quant, log=log)
        gen = LlamaCppGenerator(path, tok, embed if cut else None, ids if cut else None, decode_threads=threads)
        out.append(DecodePath(label, gen, gguf_bytes(path), forced=llamacpp_forced(gen),
                              reset=lambda g=gen: setattr(g, "_seen", [])))
    return out, f"llama.cpp: llama-cpp-python {llama_cpp.__version__}"


def run_chat_bench(base: str, adapter: str, prompts: int, max_new_tokens: int, as_json: bool,
                   out: Path | None = None, weights: str = "auto", threads: int = 1, llamacpp: bool = True,
                   agreement_rows: int | None = None) -> dict:
    # lazy: torch loads only when this runs
    import torch

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    rt = build_runtime(ChatConfig(base=base, adapter=adapter, memory_encoder="base", weights=weights,
                                  decode_threads=threads, decode_kernel="auto"), log=log)
    gen = rt.engine.generator
    if not isinstance(gen, FastGenerator):
        raise click.ClickException("the runtime did not build a FastGenerator (no head vocabulary?)")
    model, tok, name = gen.model, gen.tokenizer, gen.adapter
    ids = gen.ids.tolist() if gen.ids is not None else None

    @contextmanager
    def hf_threads():
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def fast(kernel: str) -> FastGenerator:
        if kernel == gen.step_kernel:
            return gen
        return FastGenerator(model, tok, ids, adapter=name, weights=weights, decode_threads=threads, kernel=kernel)

    def reset(g):
        return g.prefix.clear

    paths = [DecodePath("HF generate, fp32, full head (baseline)", HFGenerator(model, tok, adapter=name),
                        hf_bytes(model, name), threads=hf_threads)]
    kernels = ["torch", "native"] if gen.step_kernel == "native" else [gen.step_kernel]
    for k in kernels:
        g = fast(k)
        g.lean()
        label = {"native": "ohlora, native step", "torch": "ohlora, PyTorch step", "hf": "ohlora, HF backbone"}[k]
        dtype = str(g.weight_dtype).removeprefix("torch.") if g.lean() is not None else "fp32"
        paths.append(DecodePath(f"{label} ({dtype})", g, lean_bytes(g) if g.lean() is not None else hf_bytes(model, name),
                                forced=fast_forced(g), reset=reset(g)))
    notes = []
    if not llamacpp:
        notes.append("llama.cpp: not run (--no-llamacpp)")
    else:
        adapter_dir = resolve_adapter(adapter, resolve_base(base).name)
        more, note = llamacpp_paths(adapter_dir, resolve_base(base).name, ids, tok,
                                    model.get_input_embeddings().weight, threads, log)
        paths += more
        notes.append(note)
    fmt, card = rt.engine.prompt_format, rt.card
    rows = spread_rows(load_dataset(Path(bundled("data", "sft", "valid.csv"))), prompts)
    texts = [r.prompt(fmt, card) for r in rows]
    measure(paths, texts, fmt.stop_phrase, max_new_tokens)
    agreement(paths, model, tok, name, rows[:agreement_rows] if agreement_rows else rows, fmt, card)
    bandwidth = read_bandwidth(threads)
    turns = ten_turns()
    facts = card.facts(rt.engine.clock()) if fmt.persona_template else None
    first_token_by_turn(rt.engine, turns[:2], facts, reuse=True)  # warm-up
    cold = first_token_by_turn(rt.engine, turns, facts, reuse=False)
    warm = first_token_by_turn(rt.engine, turns, facts, reuse=True)
    result = summarize(paths, bandwidth, threads, warm, cold)
    lines = table(paths, result, rt, len(texts), max_new_tokens, threads, notes, gen, warm, cold)
    report(lines, out, as_json, result)
    rt.store.close()
    return result


def summarize(paths, bandwidth, threads, warm, cold) -> dict:
    base = paths[0].stats
    base_rate = base["decode_tokens"] / base["decode_s"]
    rows = []
    for p in paths:
        s = p.stats
        rate = s["decode_tokens"] / s["decode_s"]
        rows.append({"path": p.name, "decode_tok_s": round(rate, 2), "ratio": round(rate / base_rate, 3),
                     "answer_30_tokens_s": round(statistics.median(s["t30"]), 3),
                     "same_answers": sum(a == b for a, b in zip(s["answers"], base["answers"])),
                     "answers": len(s["answers"]),
                     "top1_agreement": None if s["agreement"] is None else round(s["agreement"], 4),
                     "mbytes_per_token": round(p.bytes_per_token / 1e6, 1),
                     "limit_tok_s": round(bandwidth / p.bytes_per_token, 1),
                     "share_of_limit": round(rate / (bandwidth / p.bytes_per_token), 3)})
    return {"threads": threads, "read_gb_s": round(bandwidth / 1e9, 2), "paths": rows,
            "first_token_turn1_s": round(warm[0], 3), "first_token_turn10_s": round(warm[-1], 3),
            "first_token_mean_turns_2_10_s": round(statistics.mean(warm[1:]), 3),
            "first_token_mean_turns_2_10_no_reuse_s": round(statistics.mean(cold[1:]), 3)}


def table(paths, result, rt, n_prompts, max_new_tokens, threads, notes, gen, warm, cold) -> list[str]:

    cpu = _cpu_name() or platform.processor() or platform.machine()
    lines = [
        f"model {rt.description}; {n_prompts} validation prompts, greedy, max {max_new_tokens} new tokens; "
        f"decode on {threads} thread(s); CPU: {cpu}",
        f"head: {len(gen.ids) if gen.ids is not None else len(gen.tokenizer)} of {len(gen.tokenizer)} tokens; "
        f"read bandwidth measured here ({threads} thread(s)): {result['read_gb_s']:.1f} GB/s",
        *notes, "",
        "| path | decode tok/s | vs baseline | 30-token answer (s) | same answers as baseline | top-1 agreement "
        "| MB read per token | limit tok/s | share of limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["paths"]:
        agree = "reference" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.2f}%"
        lines.append(f"| {r['path']} | {r['decode_tok_s']:.1f} | {r['ratio']:.2f}x | {r['answer_30_tokens_s']:.2f} | "
                     f"{r['same_answers']}/{r['answers']} | {agree} | {r['mbytes_per_token']:.0f} | "
                     f"{r['limit_tok_s']:.0f} | {100 * r['share_of_limit']:.0f}% |")
    lines += [
        "", "decode tok/s: answer tokens after the first over their time (the prompt's time taken out); "
        "top-1 agreement: teacher-forced along the validation answers, each path's own one-token step, "
        "against the full fp32 model; limit: read bandwidth / bytes of weights read per token.",
        "", f"first token per turn of a 10-turn conversation, default path (history "
        f"{rt.engine.config.history_tokens} tokens, dropped in blocks of {rt.engine.config.history_align}), seconds:",
        "| turn | " + " | ".join(str(i + 1) for i in range(len(warm))) + " |",
        "| --- |" + " --- |" * len(warm),
        "| prefix reused | " + " | ".join(f"{x:.2f}" for x in warm) + " |",
        "| computed from scratch | " + " | ".join(f"{x:.2f}" for x in cold) + " |",
    ]
    return lines


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def first_token_by_turn(engine, turns, facts: str | None, reuse: bool, max_new_tokens: int = 24) -> list[float]:
    """Seconds to the first streamed text of each turn of one conversation (its reference
    answers as the history, cut as the chat cuts it), greedy; `reuse=False` empties the
    generator's prefix cache before every turn (each prompt computed from scratch)."""
    gen, fmt, out = engine.generator, engine.prompt_format, []
    for k, t in enumerate(turns):
        prompt = fmt.render(t.user, history=engine.fit_history(turns[:k]), facts=facts)
        if not reuse:
            gen.prefix.clear()
        first: list[float] = []
        t0 = time.perf_counter()
        gen.generate(prompt, stop_phrase=fmt.stop_phrase, max_new_tokens=max_new_tokens, temperature=0,
                     on_text=lambda _: first or first.append(time.perf_counter() - t0))
        out.append(first[0] if first else time.perf_counter() - t0)
    return out


def ten_turns():
    """Ten turns of the bundled held-out dialogues, one conversation after another."""

    turns = [Turn(t["user"], t["answer"]) for d in load_dialogues() for t in d["turns"]]
    return turns[:10]
