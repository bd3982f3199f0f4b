"""`ohlora bench chat`: generation speed of plain HF `generate` (fp32, full head) vs ohlora's
FastGenerator, same model + adapter, same prompts, same process, greedy; plus the teacher-forced
top-1 agreement of ohlora's path with the full model on validation answers."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click

from ohlora.bench_report import report


def teacher_forced_agreement(model, tok, fast, rows, fmt, card, adapter) -> float:
    """Share of answer positions where ohlora's top-1 equals the full fp32 model's: ohlora's own
    path (the lean decoder with its weight dtype, where it is used, and the restricted head)."""
    import torch

    from ohlora.models import use_adapter

    lean = fast.lean()
    same = total = 0
    with torch.inference_mode(), use_adapter(model, adapter):
        for r in rows:
            prompt_ids = tok(r.prompt(fmt, card))["input_ids"]
            answer_ids = tok(fmt.target(r.output), add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + answer_ids])
            out = model(input_ids=ids, output_hidden_states=lean is None)
            pos = slice(len(prompt_ids) - 1, ids.shape[1] - 1)  # positions predicting the answer
            full = out.logits[0, pos].argmax(-1)  # (A,)
            if lean is not None:
                h = lean.forward(ids[0], lean.new_cache(ids.shape[1]), every_position=True)[pos]  # (A, H)
            else:
                h = out.hidden_states[-1][0, pos]  # (A, H)
            ours = fast._logits(h).argmax(-1)
            ours = ours if fast.ids is None else fast.ids[ours]
            same += int((full == ours).sum())
            total += full.numel()
    return same / total


def first_token_by_turn(engine, turns, facts: str | None, reuse: bool, max_new_tokens: int = 24) -> list[float]:
    """Seconds to the first streamed text of each turn of one conversation (its reference
    answers as the history, cut as the chat cuts it), greedy; `reuse=False` empties the
    generator's prefix cache before every turn (each prompt computed from scratch)."""
    gen, fmt, out = engine.generator, engine.prompt_format, []
    for k, t in enumerate(turns):
        prompt = fmt.render(t.user, history=engine.fit_history(turns[:k]), facts=facts)
        if not reuse:
            gen._prefix = None
        first: list[float] = []
        t0 = time.perf_counter()
        gen.generate(prompt, stop_phrase=fmt.stop_phrase, max_new_tokens=max_new_tokens, temperature=0,
                     on_text=lambda _: first or first.append(time.perf_counter() - t0))
        out.append(first[0] if first else time.perf_counter() - t0)
    return out


def ten_turns():
    """Ten turns of the bundled held-out dialogues, one conversation after another."""
    from ohlora.evaluation.conversation import load_dialogues
    from ohlora.memory.conversations import Turn

    turns = [Turn(t["user"], t["answer"]) for d in load_dialogues() for t in d["turns"]]
    return turns[:10]


def run_chat_bench(base: str, adapter: str, prompts: int, max_new_tokens: int, as_json: bool,
                   out: Path | None = None, weights: str = "auto") -> dict:
    import torch

    from ohlora.config import ChatConfig
    from ohlora.fast_generation import FastGenerator
    from ohlora.generation import HFGenerator
    from ohlora.runtime import build_runtime
    from ohlora.training.data import load_dataset, spread_rows
    from ohlora.training.llm_config import bundled

    rt = build_runtime(ChatConfig(base=base, adapter=adapter, memory_encoder="base", weights=weights))
    gen = rt.engine.generator
    if not isinstance(gen, FastGenerator):
        raise click.ClickException("the runtime did not build a FastGenerator (no head vocabulary?)")
    model, tok, name = gen.model, gen.tokenizer, gen.adapter
    baseline = HFGenerator(model, tok, adapter=name)
    fmt, card = rt.engine.prompt_format, rt.card
    rows = spread_rows(load_dataset(Path(bundled("data", "sft", "valid.csv"))), prompts)
    texts = [r.prompt(fmt, card) for r in rows]
    stop = fmt.stop_phrase
    baseline.generate(texts[0], stop_phrase=stop, max_new_tokens=8, temperature=0)  # warm-up both
    gen.generate(texts[0], stop_phrase=stop, max_new_tokens=8, temperature=0)
    times = {"baseline": [0.0, 0], "ohlora": [0.0, 0]}
    same_text = 0
    with click.progressbar(texts, label="bench chat", file=click.get_text_stream("stderr")) as bar:
        for i, p in enumerate(bar):
            outs = {}
            for key in (("baseline", "ohlora") if i % 2 == 0 else ("ohlora", "baseline")):
                g = baseline if key == "baseline" else gen
                t = time.perf_counter()
                res = g.generate(p, stop_phrase=stop, max_new_tokens=max_new_tokens, temperature=0)
                times[key][0] += time.perf_counter() - t
                times[key][1] += res.n_tokens
                outs[key] = res.text
            same_text += outs["baseline"] == outs["ohlora"]
    t30 = []
    for p in texts[:5]:  # a 30-token answer: prompt + 30 generated tokens, stop phrase disabled
        t = time.perf_counter()
        gen.generate(p, stop_phrase="\x00never", max_new_tokens=30, temperature=0)
        t30.append(time.perf_counter() - t)
    agreement = teacher_forced_agreement(model, tok, gen, rows, fmt, card, name)
    turns = ten_turns()
    facts = card.facts(rt.engine.clock()) if fmt.persona_template else None
    first_token_by_turn(rt.engine, turns[:2], facts, reuse=True)  # warm-up
    cold = first_token_by_turn(rt.engine, turns, facts, reuse=False)
    warm = first_token_by_turn(rt.engine, turns, facts, reuse=True)
    base_tps = times["baseline"][1] / times["baseline"][0]
    ours_tps = times["ohlora"][1] / times["ohlora"][0]
    result = {"baseline_tok_s": round(base_tps, 2), "ohlora_tok_s": round(ours_tps, 2),
              "ratio": round(ours_tps / base_tps, 3), "top1_agreement": round(agreement, 4),
              "first_token_turn1_s": round(warm[0], 3), "first_token_turn10_s": round(warm[-1], 3),
              "first_token_turn10_no_reuse_s": round(cold[-1], 3),
              "first_token_mean_turns_2_10_s": round(statistics.mean(warm[1:]), 3),
              "first_token_mean_turns_2_10_no_reuse_s": round(statistics.mean(cold[1:]), 3)}
    lines = [
        f"model {rt.description}, {len(texts)} validation prompts, greedy, max {max_new_tokens} new tokens, "
        f"threads {torch.get_num_threads()}",
        f"head: {len(gen.ids) if gen.ids is not None else len(tok)} of {len(tok)} tokens; decoder weights: "
        f"{str(gen.weight_dtype).removeprefix('torch.') if gen.lean() is not None else 'as loaded (HF backbone)'}",
        "", "| path | tokens | seconds | tokens/s |", "| --- | --- | --- | --- |",
        f"| baseline: HF generate, fp32, full head | {times['baseline'][1]} | {times['baseline'][0]:.1f} | {base_tps:.1f} |",
        f"| ohlora: FastGenerator | {times['ohlora'][1]} | {times['ohlora'][0]:.1f} | {ours_tps:.1f} |",
        "", f"ratio: {ours_tps / base_tps:.2f}x; teacher-forced top-1 agreement with the full model: "
        f"{100 * agreement:.2f}% ({len(rows)} validation answers); identical greedy answers: {same_text}/{len(texts)}",
        f"30-token answer (prompt + 30 tokens): median {statistics.median(t30):.2f} s",
        "", f"first token per turn of a 10-turn conversation (history {rt.engine.config.history_tokens} tokens, "
        f"dropped in blocks of {rt.engine.config.history_align}), seconds:",
        "| turn | " + " | ".join(str(i + 1) for i in range(len(warm))) + " |",
        "| --- |" + " --- |" * len(warm),
        "| prefix reused | " + " | ".join(f"{x:.2f}" for x in warm) + " |",
        "| computed from scratch | " + " | ".join(f"{x:.2f}" for x in cold) + " |",
    ]
    report(lines, out, as_json, result)
    rt.store.close()
    return result
