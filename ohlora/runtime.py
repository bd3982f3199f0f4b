"""Assemble a ready ChatEngine from a ChatConfig: load the model, adapter, encoder and store.

This is the only place that wires real collaborators together; the engine itself stays pure.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ohlora.chat import ChatEngine
from ohlora.config import ChatConfig
from ohlora.generation import HFGenerator
from ohlora.memory.encoder import HiddenStateEncoder
from ohlora.memory.retrieval import Retriever
from ohlora.memory.store import MemoryStore
from ohlora.models import load_adapter, load_base, resolve_base, set_cpu_threads
from ohlora.paths import memory_db_path
from ohlora.prompt import PromptFormat


@dataclass
class Runtime:
    engine: ChatEngine
    store: MemoryStore
    load_seconds: float
    description: str


def open_store(path: Path | None = None) -> MemoryStore:
    return MemoryStore(path or memory_db_path())


def build_runtime(cfg: ChatConfig, log=None) -> Runtime:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    store = open_store()  # fail fast on a corrupt database, before loading a model
    set_cpu_threads()
    spec = resolve_base(cfg.base)
    log(f"Loading {spec.name} ...")
    model, tokenizer = load_base(spec)
    fmt = PromptFormat.few_shot()  # a bare base model needs worked examples of the format
    name = spec.name
    if cfg.adapter:
        model = load_adapter(model, Path(cfg.adapter))
        fmt = PromptFormat.load(Path(cfg.adapter))
        name += f"+{Path(cfg.adapter).name}"
    encoder = HiddenStateEncoder(model, tokenizer, name=name)
    engine = ChatEngine(HFGenerator(model, tokenizer), Retriever(encoder, store, cfg.memory_threshold),
                        store, fmt, cfg)
    return Runtime(engine, store, time.perf_counter() - t0, name)
