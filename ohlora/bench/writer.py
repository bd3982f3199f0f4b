"""`ohlora bench writer`: the memory writer's time per message, three ways side by side in one
process, interleaved message by message (so a busy machine slows each alike):

  alone        the writer adapter's own calibrated decision (the baseline: `--intent none`);
  head         the key-intent head, then the writer (forced key, or its own decision), never skipping;
  head + skip  the shipped policy: as `head`, but no decode when P(nothing) >= skip_nothing_prob.

The head's forward pass is timed on its own, then left in the prompt cache, as in chat, where the
ethics guard has embedded the message with the same prompt before the writer runs; the table gives
each way without it and with it added. Messages: the writer's bundled test split, whose
mix of facts and small talk (135 / 105) has more facts than a chat does.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ohlora.bench.report import report
from ohlora.config import ChatConfig
from ohlora.datasets.writer import read_writer_rows
from ohlora.errors import OhloraError
from ohlora.memory.intent import IntentPolicy, IntentWriter, KeyIntent, prepare, resolve_intent
from ohlora.memory.loading import untrained_encoder
from ohlora.memory.writer_decode import ConstrainedWriter
from ohlora.models import set_cpu_threads
from ohlora.paths import bundled
from ohlora.runtime import build_runtime

PRIME = "응"
"""Written (untimed) before each timed message: the writer's prefix cache then holds its prompt
template and another message, as in chat, never the message about to be timed."""


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"mean_ms": round(float(a.mean()), 1), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1)}


def run_writer_bench(base: str, intent: str, limit: int, as_json: bool, out: Path | None = None,
                     file_: Path | None = None) -> dict:
    set_cpu_threads(1)
    intent_dir = resolve_intent(intent)
    if intent_dir is None:
        raise OhloraError("bench writer compares the writer with and without its key-intent head: "
                          "pass --intent default or a directory")
    rows = read_writer_rows(file_ or Path(bundled("data", "writer", "test.csv")))[:limit]
    rt = build_runtime(ChatConfig(base=base, memory_encoder="none", memory_writer="adapter", guard="none",
                                  summary_adapter="none"))
    writer = rt.engine.writer
    if not isinstance(writer, ConstrainedWriter):
        raise OhloraError(f"no calibrated writer adapter is shipped for {base}")
    policy = IntentPolicy.load(intent_dir)
    if policy.skip_nothing_prob is None:
        raise OhloraError(f"{intent_dir}: its policy has no skip_nothing_prob to compare (train intent --head)")
    shared = untrained_encoder(policy.base)
    skipping = KeyIntent.load(intent_dir, shared)
    never = KeyIntent(skipping.encoder, skipping.head, replace(policy, skip_nothing_prob=None), skipping.ngrams)
    ways = {"alone": writer, "head": IntentWriter(never, writer), "head + skip": IntentWriter(skipping, writer)}
    times = {k: [] for k in ways}
    forward, skipped = [], 0
    for i, r in enumerate(rows):
        t = time.perf_counter()
        skipping.encoder.encode_query([prepare(r.message)])  # the head's forward pass; now cached, as after the guard
        forward.append(1000 * (time.perf_counter() - t))
        for name, w in ways.items():  # interleaved: each way sees the machine as it is for this message
            writer.write(PRIME)  # the writer's prompt cache holds its template, not this message
            t = time.perf_counter()
            res = w.write(r.message)
            times[name].append(1000 * (time.perf_counter() - t))
            if name == "head + skip" and res.reason == "nothing" and not res.raw:
                skipped += 1
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(rows)} messages", flush=True)
    rt.store.close()
    result = {"messages": len(rows), "skipped": skipped, "skip_nothing_prob": policy.skip_nothing_prob,
              "head_forward": stats(forward), **{k: stats(v) for k, v in times.items()}}
    f = result["head_forward"]["mean_ms"]
    lines = [f"writer: {base}, key-intent head: {intent_dir.name}, {len(rows)} messages of the writer's test split, "
             f"1 thread; the head skipped the writer for {skipped}; the head's forward pass: {f:.0f} ms mean "
             "(in chat the guard has already paid it: the columns below leave it out)", "",
             "| way | mean ms | p50 | p95 | mean vs alone | mean + the head's forward pass |",
             "| --- | --- | --- | --- | --- | --- |"]
    alone = result["alone"]["mean_ms"]
    for k in ways:
        c = result[k]
        lines.append(f"| {k} | {c['mean_ms']:.0f} | {c['p50_ms']:.0f} | {c['p95_ms']:.0f} | "
                     f"{c['mean_ms'] / alone:.2f}x | {c['mean_ms'] + (f if k != 'alone' else 0):.0f} |")
    report(lines, out, as_json, result)
    return result
