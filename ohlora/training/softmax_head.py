"""A softmax (multinomial logistic) head on frozen sentence embeddings, and the
chunked embedding with a progress bar that feeds it: what the ethics guard and the expression
classifier are trained with."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ohlora.memory.heads import SoftmaxHead
from ohlora.memory.ngrams import NgramVocabulary, beside


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-3, steps: int = 200,
             balanced: bool = True, l2_columns: np.ndarray | None = None) -> SoftmaxHead:
    """Multinomial logistic regression on (N, D) features, class-weighted unless `balanced` is
    False. The L2 penalty is `l2` on every weight, or per column `l2_columns` (D,) when given
    (features of different kinds side by side, each with its own penalty)."""
    # lazy: torch loads only when this runs
    import torch

    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    counts = torch.bincount(yt, minlength=n_classes).clamp(min=1).float()
    weights = counts.sum() / (n_classes * counts) if balanced else None  # (C,) balanced
    penalty = torch.as_tensor(l2_columns, dtype=torch.float32) if l2_columns is not None else torch.full((x.shape[1],), l2)
    w = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w.T + b, yt, weight=weights) + (w * w * penalty).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return SoftmaxHead(w.detach().numpy(), b.detach().numpy())


def embed(encoder, texts: list[str], what: str, chunk: int = 64) -> np.ndarray:
    """encode_query in chunks, with a progress bar (minutes on a busy CPU)."""

    parts = [encoder.encode_query(texts[i:i + chunk])
             for i in tqdm(range(0, len(texts), chunk), desc=f"embedding {what}", unit="chunk", leave=False)]
    return np.concatenate(parts)


def fit_with_ngrams(x: np.ndarray, prepared: list[str], y: np.ndarray, n_classes: int, sizes: tuple[int, ...],
                    min_count: int, l2: float, l2_ngrams: float, steps: int,
                    balanced: bool) -> tuple[SoftmaxHead, NgramVocabulary | None, np.ndarray]:
    """`fit_head` on the (N, D) embeddings with the character n-grams of the prepared messages beside
    them (the vocabulary: n-grams of >= `min_count` of them), one L2 penalty per feature kind;
    `sizes` () for the embedding alone. Returns the head, its vocabulary (None without n-grams) and
    the (N, D [+ V]) features it was fitted on."""
    ngrams = NgramVocabulary.build(prepared, tuple(sizes), min_count) if sizes else None
    penalty = np.full(x.shape[1] + (len(ngrams) if ngrams else 0), l2, dtype=np.float64)
    penalty[x.shape[1]:] = l2_ngrams
    features = beside(x, prepared, ngrams)
    return fit_head(features, y, n_classes, l2, steps, balanced=balanced, l2_columns=penalty), ngrams, features
