"""The two pieces the ethics guard, the expression head and the key-intent head share: a linear softmax head over a
sentence embedding (`head.npz` beside its policy), and the classifier's view of a loaded sentence
encoder (same model, pooling and Dense layers, adapter off, the policy's classification prompt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError
from ohlora.memory.encoder import EncoderFormat, HiddenStateEncoder, PromptCache

HEAD_FILE = "head.npz"


@dataclass(frozen=True)
class SoftmaxHead:
    """Linear softmax: (N, D) embeddings -> (N, C) probabilities."""

    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)

    def probs(self, x: np.ndarray) -> np.ndarray:
        logits = np.asarray(x, dtype=np.float32) @ self.weight.T + self.bias  # (N, C)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, directory: Path) -> None:
        np.savez(Path(directory) / HEAD_FILE, weight=self.weight.astype(np.float32), bias=self.bias.astype(np.float32))

    @classmethod
    def load(cls, directory: Path) -> "SoftmaxHead":
        path = Path(directory) / HEAD_FILE
        if not path.is_file():
            raise OhloraError(f"{path} is missing: the head's directory is incomplete")
        with np.load(path) as z:
            return cls(z["weight"], z["bias"])


def classifier_encoder(shared, policy, purpose: str = "guard", batch_size: int = 16):
    """A classifier's encoder on a loaded sentence encoder `shared` of `policy.base` (the memory's
    EmbeddingGemma, or one loaded for the purpose): same model, pooling and Dense head, no
    adapter, the policy's classification prompt (`policy.query_template`). The views of one
    `shared` model share one PromptCache, so a message the guard embedded costs the key-intent head
    no second forward pass."""

    fmt = EncoderFormat(pooling=shared.fmt.pooling, item_template=shared.fmt.item_template,
                        query_template=policy.query_template)
    if getattr(shared, "classify_cache", None) is None:
        shared.classify_cache = PromptCache()  # one per loaded model: its classifier views share it
    return HiddenStateEncoder(shared.model, shared.tokenizer, layer=shared.layer, name=f"{policy.base}:{purpose}",
                              batch_size=batch_size, adapter=None, fmt=fmt, head=shared.head,
                              cache=shared.classify_cache)
