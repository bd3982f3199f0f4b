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
from ohlora.fast_generation import FastGenerator, load_head_vocab
from ohlora.generation import HFGenerator
from ohlora.memory.encoder import HiddenStateEncoder
from ohlora.memory.loading import attach_memory_adapter, shipped_memory_adapter
from ohlora.memory.retrieval import Retriever
from ohlora.memory.store import MemoryStore
from ohlora.errors import OhloraError
from ohlora.models import load_adapter, load_base, resolve_base, set_cpu_threads, shipped_adapter
from ohlora.paths import memory_db_path
from ohlora.persona import FILENAME as PERSONA_FILE
from ohlora.persona import PersonaCard, time_hinter
from ohlora.prompt import PromptFormat


@dataclass
class Runtime:
    engine: ChatEngine
    store: MemoryStore
    load_seconds: float
    description: str
    card: PersonaCard


def open_store(path: Path | None = None) -> MemoryStore:
    return MemoryStore(path or memory_db_path())


def resolve_adapter(adapter: str | None, base_name: str) -> Path | None:
    """"default" -> the adapter shipped for this base (if any); "none"/None -> no adapter; else a path."""
    if adapter is None or adapter.lower() == "none":
        return None
    if adapter == "default":
        return shipped_adapter(base_name)
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise OhloraError(f"adapter directory {path} not found")
    return path


def resolve_memory_adapter(which: str, base_name: str) -> Path | None:
    """"default" -> the memory adapter shipped for this base (if any); "base" -> none; else a path."""
    if which == "base":
        return None
    if which == "default":
        return shipped_memory_adapter(base_name)
    path = Path(which).expanduser()
    if not path.is_dir():
        raise OhloraError(f"memory adapter directory {path} not found")
    return path


def build_runtime(cfg: ChatConfig, log=None) -> Runtime:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    store = open_store()  # fail fast on a corrupt database, before loading a model
    set_cpu_threads()
    spec = resolve_base(cfg.base)
    log(f"Loading {spec.name} ...")
    model, tokenizer = load_base(spec)
    fmt = PromptFormat.few_shot()  # a bare base model needs worked examples of the format
    card = PersonaCard.load()
    name = spec.name
    adapter = resolve_adapter(cfg.adapter, spec.name)
    if adapter is not None:
        log(f"Loading adapter {adapter.name} ...")
        model = load_adapter(model, adapter)
        fmt = PromptFormat.load(adapter)
        if (adapter / PERSONA_FILE).exists():
            card = PersonaCard.load(adapter / PERSONA_FILE)
        name += f"+{adapter.name}"
    memory_adapter = resolve_memory_adapter(cfg.memory_encoder, spec.name)
    if memory_adapter is not None:
        log(f"Loading memory adapter {memory_adapter.name} ...")
        model, encoder = attach_memory_adapter(model, tokenizer, spec.name, memory_adapter)
    else:
        encoder = HiddenStateEncoder(model, tokenizer, name=spec.name)  # untrained pooling, adapters off
    chat_adapter = "chat" if adapter is not None else None
    if cfg.generator == "fast":
        vocab = load_head_vocab(adapter) if adapter is not None else None
        generator = FastGenerator(model, tokenizer, vocab, adapter=chat_adapter, weights=cfg.weights)
    else:
        generator = HFGenerator(model, tokenizer, adapter=chat_adapter)
    engine = ChatEngine(generator, Retriever(encoder, store, cfg.memory_threshold),
                        store, fmt, cfg, hint_fn=time_hinter(card))
    return Runtime(engine, store, time.perf_counter() - t0, name, card)
