"""`ohlora bench memory`: retrieval latency per query with cached item embeddings (ohlora) vs
re-encoding every stored item for every query (as the original did), at several store sizes."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from ohlora.bench.report import report
from ohlora.datasets.combinations import load_combs
from ohlora.memory.loading import load_memory_encoder, load_recall
from ohlora.memory.retrieval import Retriever
from ohlora.models import set_cpu_threads
from ohlora.paths import bundled
from ohlora.store.memories import MemoryStore


def fill_store(store, user: str, n: int, combs) -> None:
    """n distinct items, keys made unique with a number so none replaces another."""
    for i in range(n):
        c = combs[i % len(combs)]
        store.add(user, f"{c.key} {i}", c.value)


def run_memory_bench(encoder_name: str, base: str, sizes: list[int], queries: int, as_json: bool,
                     out: Path | None = None) -> list[dict]:

    set_cpu_threads()
    encoder = load_memory_encoder(encoder_name, base)
    combs = load_combs(Path(bundled("data", "memory", "test_combs.txt")))
    messages = [c.message for c in combs][:max(queries, 1)]
    rows = []
    for n in sizes:
        store = MemoryStore()
        fill_store(store, "bench", n, combs)
        decider, reference = load_recall(encoder)
        retriever = Retriever(encoder, store, decider=decider, reference=reference)  # both stages
        click.echo(f"  {n} items: encoding them into the cache, then timing {len(messages)} queries "
                   "and re-encoding every item per query (the baseline)...", err=True)
        t = time.perf_counter()
        retriever.best("bench", messages[0])  # one-off: encodes every item once into the cache
        first = time.perf_counter() - t
        t = time.perf_counter()
        for m in messages:
            retriever.best("bench", m)
        cached = (time.perf_counter() - t) / len(messages)
        reps = 1 if n >= 5000 else min(3, len(messages))
        items = store.list("bench")
        t = time.perf_counter()
        for m in messages[:reps]:  # the original: every item re-encoded for every query
            vecs = encoder.encode([i.text for i in items])
            q = encoder.encode_query([m])[0]
            int(np.argmax(vecs @ q))
        reencode = (time.perf_counter() - t) / reps
        rows.append({"items": n, "cached_ms": round(1000 * cached, 2), "reencode_ms": round(1000 * reencode, 1),
                     "speedup": round(reencode / cached, 1), "first_query_ms": round(1000 * first, 1)})
        store.close()
        click.echo(f"  {n} items: cached {1000 * cached:.1f} ms, re-encode {1000 * reencode:.0f} ms", err=True)
    lines = [f"encoder: {encoder.id}", "",
             "| stored items | ohlora, cached (ms/query) | re-encode all (ms/query) | speedup | first query, fills cache (ms) |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['items']} | {r['cached_ms']:.1f} | {r['reencode_ms']:.0f} | {r['speedup']:.0f}x | "
              f"{r['first_query_ms']:.0f} |" for r in rows]
    report(lines, out, as_json, rows)
    return rows
