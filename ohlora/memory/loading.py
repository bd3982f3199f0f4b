"""Build a memory encoder by name: the shipped memory adapter, untrained base pooling, an adapter
directory from `ohlora train memory`, or any Hugging Face encoder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from ohlora.errors import OhloraError
from ohlora.memory.encoder import EncoderFormat, HiddenStateEncoder

ENCODER_FILE = "memory_encoder.yaml"
ADAPTER_NAME = "memory"


def shipped_memory_adapter(base_name: str) -> Path | None:
    from importlib.resources import files

    path = Path(str(files("ohlora").joinpath("assets", "adapters", f"memory-{base_name}")))
    return path if (path / "adapter_config.json").is_file() else None


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
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def attach_memory_adapter(model, tokenizer, base_name: str, adapter_dir: Path, head=None):
    """Add the memory adapter beside any chat adapter on the same model; returns (model, encoder)."""
    from ohlora.models import load_adapter

    meta = read_meta(adapter_dir)
    model = load_adapter(model, adapter_dir, name=ADAPTER_NAME)
    enc = HiddenStateEncoder(model, tokenizer, layer=int(meta.get("layer", -1)),
                             name=f"{base_name}+{Path(adapter_dir).name}@{adapter_fingerprint(adapter_dir)}",
                             adapter=ADAPTER_NAME, fmt=EncoderFormat.from_dict(meta.get("format")), head=head)
    return model, enc


def load_adapter_encoder(adapter_dir: Path):
    """A memory adapter on its own base model (loaded here): for an adapter whose base is not the
    chat model's (EmbeddingGemma), and for evaluation and tools."""
    from ohlora.training.memory import load_encoder_backbone

    meta = read_meta(adapter_dir)
    model, tok, _, head = load_encoder_backbone(meta["base"])
    _, enc = attach_memory_adapter(model, tok, meta["base"], adapter_dir, head=head)
    return enc


def load_memory_encoder(which: str, base: str = "gemma-3-270m"):
    """For evaluation and tools: an encoder with its own model loaded."""
    from ohlora.training.memory import load_encoder_backbone

    if which == "base":
        model, tok, _, head = load_encoder_backbone(base)
        return HiddenStateEncoder(model.eval(), tok, name=base, head=head)
    if which == "default":
        adapter = shipped_memory_adapter(base)
        if adapter is None:
            raise OhloraError(f"no memory adapter is shipped for {base}: train one with `ohlora train memory`")
        which = str(adapter)
    path = Path(which).expanduser()
    if path.is_dir() and (path / ENCODER_FILE).is_file():
        return load_adapter_encoder(path)
    model, tok, _, head = load_encoder_backbone(which)  # a Hugging Face encoder, mean pooling
    return HiddenStateEncoder(model.eval(), tok, name=which, head=head)
