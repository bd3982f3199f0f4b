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
from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.generator import HFGenerator
from ohlora.decoding.head import load_head_vocab
from ohlora.decoding.llamacpp import LlamaCppGenerator, import_llama_cpp
from ohlora.errors import OhloraError
from ohlora.export.engine_file import engine_gguf
from ohlora.expression import ExpressionPolicy, load_expressor, shipped_expression
from ohlora.memory.encoder import HiddenStateEncoder
from ohlora.memory.examples import ExampleBank, held_out_messages, read_bank
from ohlora.memory.intent import IntentPolicy, IntentWriter, KeyIntent, resolve_intent
from ohlora.memory.loading import (
    attach_memory_adapter,
    attach_summarizer,
    attach_writer,
    load_adapter_encoder,
    load_recall,
    read_meta,
    resolve_memory_encoder,
    shipped_summary_adapter,
    shipped_writer_adapter,
)
from ohlora.memory.retrieval import Retriever
from ohlora.memory.topics import TopicFinder, TopicSettings, read_topic_questions
from ohlora.memory.writer import ChatTagWriter
from ohlora.memory.writer_decode import ConstrainedWriter
from ohlora.models import (
    load_adapter,
    load_base,
    resolve_base,
    set_cpu_threads,
    shipped_adapter,
)
from ohlora.paths import bundled, home_dir, memory_db_path, resolve_named
from ohlora.persona import FILENAME as PERSONA_FILE
from ohlora.grounding import FactCheck, persona_topics
from ohlora.persona import PersonaCard, time_hinter
from ohlora.prompt import PromptFormat
from ohlora.safety.classifier import GuardPolicy
from ohlora.safety.guard import EscalationPolicy, EthicsGuard
from ohlora.safety.loading import load_guard_classifier, resolve_guard
from ohlora.store.conversations import ConversationStore
from ohlora.store.memories import MemoryStore


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
    return resolve_named(adapter, shipped_adapter(base_name), "adapter")


def build_runtime(cfg: ChatConfig, log=None) -> Runtime:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if cfg.generator == "fast" and cfg.engine == "llamacpp":

        import_llama_cpp()  # the one-line install hint before a model is prepared or loaded
    store = open_store()  # fail fast on a corrupt database, before loading a model
    resolve_intent(cfg.writer_intent)  # and on a key-intent directory that is not there
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
    model, retriever = build_retriever(model, tokenizer, spec.name, cfg, store, log)
    model, writer = build_writer(model, tokenizer, spec.name, cfg, log)
    writer = with_intent(writer, cfg, retriever, log)
    model, summarizer = build_summarizer(model, tokenizer, spec.name, cfg, log)
    chat_adapter = "chat" if adapter is not None else None
    if cfg.generator == "fast" and cfg.engine == "llamacpp":
        generator = build_llamacpp(model, tokenizer, spec.name, adapter, cfg, log)
    elif cfg.generator == "fast":
        vocab = load_head_vocab(adapter) if adapter is not None else None
        generator = FastGenerator(model, tokenizer, vocab, adapter=chat_adapter, weights=cfg.weights,
                                  decode_threads=cfg.decode_threads, kernel=cfg.decode_kernel, log=log)
    else:
        generator = HFGenerator(model, tokenizer, adapter=chat_adapter)
    guard = build_guard(cfg, retriever, store, log)
    engine = ChatEngine(generator, retriever, store, fmt, cfg, writer=writer,
                        guard=guard, conversations=ConversationStore(store), facts_fn=card.facts,
                        expressor=build_expressor(retriever), summarizer=summarizer,
                        fact_check=FactCheck(card, finder=build_topic_finder(cfg, retriever, card, log)),
                        examples=build_examples(cfg, retriever, log))
    engine.hint_fn = time_hinter(card, clock=lambda: engine.clock())  # one clock for the hint and the check
    return Runtime(engine, store, time.perf_counter() - t0, name, card)


def build_llamacpp(model, tokenizer, base_name: str, adapter: Path | None, cfg: ChatConfig, log):
    """The llama.cpp engine on this base + chat adapter, its file cut to the adapter's head
    (built once and cached); a model without a head vocabulary runs with its full vocabulary."""

    vocab = load_head_vocab(adapter) if adapter is not None else None
    path = engine_gguf(adapter, base_name, vocab, cfg.llamacpp_weights, log=log)
    embed = model.get_input_embeddings().weight if vocab is not None else None
    log(f"llama.cpp engine: {path.name}")
    return LlamaCppGenerator(path, tokenizer, embed, vocab, decode_threads=cfg.decode_threads)


def build_retriever(model, tokenizer, base_name: str, cfg: ChatConfig, store: MemoryStore, log):
    """The two-stage retriever for cfg.memory_encoder; returns (model, Retriever or None).

    A memory adapter on the chat's base sits beside the chat adapter on the one model; one on
    another base (EmbeddingGemma) loads that model beside it."""
    which = resolve_memory_encoder(cfg.memory_encoder, base_name)
    if which == "none":
        return model, None
    if which == "base":
        encoder = HiddenStateEncoder(model, tokenizer, name=base_name)  # untrained pooling, adapters off
    else:
        meta_base = read_meta(which).get("base", base_name)
        log(f"Loading memory adapter {which.name} ...")
        if meta_base == base_name:
            model, encoder = attach_memory_adapter(model, tokenizer, base_name, which)
        else:
            encoder = load_adapter_encoder(which)
    decider, reference = load_recall(encoder)
    return model, Retriever(encoder, store, cfg.memory_threshold, decider, reference)


def build_guard(cfg: ChatConfig, retriever: Retriever | None, store: MemoryStore, log):
    """The ethics guard for cfg.guard, on the memory's own sentence model when it has one. The
    shipped guard reads EmbeddingGemma: with another memory encoder it is left off (no 1.2 GB
    model is loaded for it alone) unless a guard directory is named."""

    path = resolve_guard(cfg.guard)
    if path is None:
        return None
    base = GuardPolicy.load(path).base
    shared = sentence_model(retriever, base)
    if shared is None and cfg.guard == "default":
        log(f"(the ethics guard reads {base}, which this memory encoder does not load: guard off; "
            "use --memory-encoder default, or name a guard directory with `guard:`)")
        return None
    classifier = load_guard_classifier(str(path), shared)
    return EthicsGuard(classifier, store, EscalationPolicy(blocks=tuple(cfg.guard_blocks)))


def with_intent(writer, cfg: ChatConfig, retriever: Retriever | None, log):
    """The writer with the key-intent head deciding its keys (cfg.writer_intent), on the memory's
    own sentence model; the writer alone where there is no head, no such model, or no schema."""
    path = resolve_intent(cfg.writer_intent)
    if path is None or not isinstance(writer, ConstrainedWriter):
        return writer
    base = IntentPolicy.load(path).base
    shared = sentence_model(retriever, base)
    if shared is None:
        if cfg.writer_intent != "default":
            log(f"(the key-intent head reads {base}, which this memory encoder does not load: the writer decides alone)")
        return writer
    intent = KeyIntent.load(path, shared)
    try:
        return IntentWriter(intent, writer)
    except OhloraError as e:  # the head names keys this writer's schema lacks
        log(f"({e}: the writer decides alone; train a head for it with `ohlora train intent --writer DIR`)")
        return writer


def sentence_model(retriever: Retriever | None, base: str):
    """A loaded encoder of `base` in the retriever (the reference or the memory encoder), or None."""
    if retriever is None:
        return None
    return next((e for e in (retriever.reference, retriever.encoder) if e is not None and f":{base}" in e.id), None)


def build_expressor(retriever: Retriever | None):
    """The shipped expression head on the memory's EmbeddingGemma; None (neutral faces) without it."""

    path = shipped_expression()
    shared = sentence_model(retriever, ExpressionPolicy.load(path).base) if path is not None else None
    return load_expressor(path, shared) if shared is not None else None


EXAMPLES_ENCODER = "embeddinggemma-300m"
TOPIC_QUESTIONS = "topic_questions.jsonl"


def build_examples(cfg: ChatConfig, retriever: Retriever | None, log):
    """The example bank for cfg.examples > 0 (her SFT pairs, minus every held-out evaluation
    prompt), on the memory's EmbeddingGemma; None when off or when that model is not loaded."""
    if not cfg.examples:
        return None
    encoder = sentence_model(retriever, EXAMPLES_ENCODER)
    if encoder is None:
        log(f"(examples need {EXAMPLES_ENCODER}, which this memory encoder does not load: examples off; "
            "use --memory-encoder default)")
        return None
    pairs = read_bank(Path(bundled("data", "sft", "train.csv")), exclude=held_out_messages())
    return ExampleBank(encoder, pairs, cache_dir=home_dir() / "cache")


def build_topic_finder(cfg: ChatConfig, retriever: Retriever | None, card: PersonaCard, log):
    """The fact check's topic finder for cfg.fact_topics (the bundled labelled questions, on the
    memory's EmbeddingGemma); None when off or when that model is not loaded."""
    if not (cfg.fact_topics and cfg.time_check):
        return None
    encoder = sentence_model(retriever, EXAMPLES_ENCODER)
    if encoder is None:
        log(f"(fact_topics needs {EXAMPLES_ENCODER}, which this memory encoder does not load: "
            "questions about her are known by the fact check's patterns only)")
        return None
    names = {t.name for t in persona_topics(card)}
    labelled = read_topic_questions(Path(bundled("persona", TOPIC_QUESTIONS)), names)
    finder = TopicFinder(encoder, labelled, TopicSettings(min_cos=cfg.fact_topics_min_cos), cache_dir=home_dir() / "cache")
    finder.vectors()  # at start-up (once, then cached on disk), never in a user's first turn
    return finder


def build_summarizer(model, tokenizer, base_name: str, cfg: ChatConfig, log):
    """The running-summary model for cfg.summary_adapter; returns (model, summarizer or None)."""
    if cfg.history_tokens == 0:
        return model, None
    path = resolve_named(cfg.summary_adapter, shipped_summary_adapter(base_name), "summary adapter")
    if path is None:
        if cfg.summary_adapter == "default":
            log(f"(no summary model is shipped for {base_name}: turns that no longer fit are dropped; "
                "train one with `ohlora train summary`)")
        return model, None
    log(f"Loading summary model {path.name} ...")
    return attach_summarizer(model, tokenizer, path, cfg.weights, cfg.decode_kernel)


def build_writer(model, tokenizer, base_name: str, cfg: ChatConfig, log):
    """The memory writer for cfg.memory_writer; returns (model, writer)."""
    if cfg.memory_writer == "chat":
        return model, ChatTagWriter()
    path = resolve_named(cfg.writer_adapter, shipped_writer_adapter(base_name), "writer adapter")
    if path is None:
        if cfg.writer_adapter == "default":
            log(f"(no memory writer is shipped for {base_name}: the chat's own tags are stored; "
                "train one with `ohlora train writer`)")
        return model, ChatTagWriter()
    log(f"Loading memory writer {path.name} ...")
    return attach_writer(model, tokenizer, path, cfg.weights, cfg.decode_kernel)
