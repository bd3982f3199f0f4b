"""Memory encoders: turn texts into L2-normalized vectors whose cosine says how related they are.

`HiddenStateEncoder` mean-pools the hidden states of a causal LM (the chat's own base model, so
one model in memory serves both). It is the default until a trained memory encoder is shipped.
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


class HiddenStateEncoder:
    """Mean of one layer's hidden states over the text's tokens (BOS excluded).

    Gemma's BOS position carries a hidden state with a norm far above the others; leaving it in
    the mean makes every pair of texts look alike, so it is dropped.
    """

    def __init__(self, model, tokenizer, layer: int = -1, name: str = "base", batch_size: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.layer = layer
        self.batch_size = batch_size
        self.id = f"hidden-mean:{name}:layer{layer}"

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        out = []
        tok = self.tokenizer
        for i in range(0, len(texts), self.batch_size):
            batch = tok(texts[i:i + self.batch_size], return_tensors="pt", padding=True)
            batch = batch.to(self.model.device)
            mask = batch["attention_mask"].clone()  # (B, T)
            if tok.bos_token_id is not None:
                mask[batch["input_ids"] == tok.bos_token_id] = 0
            with torch.inference_mode():
                hs = self.model(**batch, output_hidden_states=True).hidden_states[self.layer]  # (B, T, H)
            m = mask.unsqueeze(-1).to(hs.dtype)  # (B, T, 1)
            pooled = (hs * m).sum(1) / m.sum(1).clamp(min=1)  # (B, H)
            out.append(pooled.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))
