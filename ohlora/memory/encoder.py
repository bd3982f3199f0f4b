"""Memory encoders: turn texts into L2-normalized vectors whose cosine says how related they are.

- `HiddenStateEncoder`: mean-pooled hidden states of a model (the chat's own base model, so one
  model in memory serves both); with `adapter` set, a LoRA adapter trained for memory
  (`ohlora train memory`) is switched on while encoding and off again afterwards.
- Any Hugging Face encoder (klue/roberta-base, a sentence-transformers checkpoint directory, ...)
  goes through the same class: AutoModel + mean pooling, as sentence-transformers does.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class MemoryEncoder(Protocol):
    id: str
    """Identifies the encoder in the embedding cache: change it and items are re-encoded."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32, each row L2-normalized."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def backbone(model):
    """The transformer without its LM head: a causal LM's decoder (its LoRA layers included), or
    an encoder model itself. Pooling never needs the (N, T, vocab) logits, the costliest part."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(inner, "get_decoder") and inner.get_output_embeddings() is not None:
        return inner.get_decoder()
    return inner


def mean_pool(model, tokenizer, texts: list[str], layer: int = -1):
    """Mean of one layer's hidden states over each text's tokens, BOS excluded: (N, H) tensor.

    Gemma's BOS position carries a hidden state with a norm far above the others; leaving it in
    the mean makes every pair of texts look alike, so it is dropped. Runs with gradients if the
    caller has them on (training) and without otherwise.
    """
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
    mask = batch["attention_mask"].clone()  # (N, T)
    if tokenizer.bos_token_id is not None:
        mask[batch["input_ids"] == tokenizer.bos_token_id] = 0
    out = backbone(model)(**batch, output_hidden_states=True)
    hs = out.hidden_states[layer]  # (N, T, H)
    m = mask.unsqueeze(-1).to(hs.dtype)  # (N, T, 1)
    return (hs * m).sum(1) / m.sum(1).clamp(min=1)  # (N, H)


class HiddenStateEncoder:
    """Mean-pooled hidden states; optionally with a named PEFT adapter active while encoding."""

    def __init__(self, model, tokenizer, layer: int = -1, name: str = "base", batch_size: int = 16,
                 adapter: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.layer = layer
        self.batch_size = batch_size
        self.adapter = adapter
        self.id = f"hidden-mean:{name}:layer{layer}" + (f":{adapter}" if adapter else "")

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        from ohlora.models import use_adapter

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        out = []
        with torch.inference_mode(), use_adapter(self.model, self.adapter):
            for i in range(0, len(texts), self.batch_size):
                pooled = mean_pool(self.model, self.tokenizer, texts[i:i + self.batch_size], self.layer)
                out.append(pooled.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))
