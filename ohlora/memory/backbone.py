"""The base model a memory encoder (or the guard's and expression's sentence model) runs on:
a causal LM preset/id/dir, or an encoder such as EmbeddingGemma with its sentence-transformers
pooling, prompts and Dense layers. Chat-time loading and `ohlora train memory` share it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from ohlora.memory.embeddinggemma import NAME, prepare_embeddinggemma
from ohlora.memory.encoder import load_sentence_head
from ohlora.models import load_base, resolve_base

ENCODER_FILE = "memory_encoder.yaml"
"""Saved beside a memory adapter: its base, layer and EncoderFormat."""
CAUSAL_ITEM_TEMPLATE = '{}\n이 기억의 종류: "'
"""The prompt around a stored item for a causal-LM encoder: it ends where the model would name the kind."""
CAUSAL_QUERY_TEMPLATE = '{}\n이 말과 관련된 기억의 종류: "'
"""The prompt around a user message for a causal-LM encoder."""


class Backbone(NamedTuple):
    model: object
    tokenizer: object
    kind: str
    """"causal-lm" or "encoder"."""
    head: object = None
    """A sentence-transformers directory's Dense layers, applied after pooling (or None)."""


def resolve_encoder_base(base: str) -> str:
    """A local directory or hub id for from_pretrained; EmbeddingGemma is prepared on first use."""

    if base.strip() == NAME:
        return str(prepare_embeddinggemma())
    return resolve_base(base).location


def load_encoder_backbone(base: str) -> Backbone:
    """The model for a causal LM preset/id/dir, or an encoder (BERT-like, or a sentence-transformers
    directory such as EmbeddingGemma, whose Dense layers come along as `head`)."""
    # lazy: torch, transformers load only when this runs
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    location = resolve_encoder_base(base)
    config = AutoConfig.from_pretrained(location)
    if getattr(config, "is_decoder", False) or any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
        model, tok = load_base(resolve_base(base), device="cpu", dtype=torch.float32)
        return Backbone(model, tok, "causal-lm")
    tok = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, dtype=torch.float32)
    head = load_sentence_head(location) if Path(location).is_dir() else None
    return Backbone(model, tok, "encoder", head)


def sentence_transformers_format(location: str) -> dict:
    """Pooling and prompts of a sentence-transformers directory ({} if it is not one): mean pooling
    with special tokens in becomes "mean_all"; its "document"/"query" prompts become the templates."""

    root = Path(location)
    out: dict = {}
    pool = root / "1_Pooling" / "config.json"
    if pool.is_file() and json.loads(pool.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
        out["pooling"] = "mean_all"
    st = root / "config_sentence_transformers.json"
    if st.is_file():
        prompts = json.loads(st.read_text(encoding="utf-8")).get("prompts") or {}
        if prompts.get("document"):
            out["item_template"] = prompts["document"] + "{}"
        if prompts.get("query"):
            out["query_template"] = prompts["query"] + "{}"
    return out
