"""Sentence vectors of a fixed list of texts, computed once per encoder and kept on disk.

The example bank and the topic finder embed a few hundred bundled sentences with the chat's
EmbeddingGemma; `encoded` does it once and caches the (N, D) array under the home's cache
directory, keyed by the encoder's id and the texts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def encoded(encoder, texts: list[str], cache_dir: Path | None, name: str) -> np.ndarray:
    """(N, D) float32 query vectors of `texts` (L2-normalized, as the encoder gives them)."""
    digest = hashlib.sha1("\n".join([encoder.id, *texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{name}-{digest}.npy" if cache_dir else None
    if path is not None and path.is_file():
        return np.load(path)
    vectors = np.asarray(encoder.encode_query(texts), dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors
