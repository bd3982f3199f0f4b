"""Character n-grams of a message: the surface cues the guard's head reads beside the embedding.

A sentence embedding places `너 어디 살아?` and `내가 어디 산다고 했지?` close together; the
n-grams `너어`, `살아?` / `내가`, `했지` tell them apart. The text is the guard's normalized
message with its spaces removed (so `사는곳` and `사는 곳` share their n-grams); each message is
a 0/1 vector over the vocabulary the head was trained with, scaled by 1/sqrt(its n-gram count)
so that long and short messages weigh alike. The vocabulary is saved beside the head
(`ngrams.txt`, one n-gram a line, in column order).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ohlora.errors import OhloraError

NGRAMS_FILE = "ngrams.txt"


def char_ngrams(text: str, sizes: tuple[int, ...]) -> list[str]:
    """The distinct character n-grams of `text` (already normalized) without its spaces, in order
    (by size, then position)."""
    t = "".join(text.split())
    return list(dict.fromkeys(t[i:i + n] for n in sizes for i in range(len(t) - n + 1)))


@dataclass(frozen=True)
class NgramVocabulary:
    sizes: tuple[int, ...]
    grams: tuple[str, ...]
    """In column order."""

    def __post_init__(self):
        object.__setattr__(self, "index", {g: i for i, g in enumerate(self.grams)})

    def __len__(self) -> int:
        return len(self.grams)

    def features(self, texts: list[str]) -> np.ndarray:
        """(N, V): 1/sqrt(k) at each of a message's k known n-grams, 0 elsewhere."""
        out = np.zeros((len(texts), len(self.grams)), dtype=np.float32)
        for row, text in enumerate(texts):
            cols = [self.index[g] for g in char_ngrams(text, self.sizes) if g in self.index]
            if cols:
                out[row, cols] = 1.0 / np.sqrt(len(cols))
        return out

    @classmethod
    def build(cls, texts: list[str], sizes: tuple[int, ...], min_count: int = 2) -> NgramVocabulary:
        """The n-grams found in at least `min_count` distinct texts, in order of first appearance."""
        counts = Counter(g for t in dict.fromkeys(texts) for g in char_ngrams(t, sizes))
        return cls(tuple(sizes), tuple(g for g, c in counts.items() if c >= min_count))

    def save(self, directory: Path) -> None:
        (Path(directory) / NGRAMS_FILE).write_text("".join(g + "\n" for g in self.grams), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, sizes: tuple[int, ...]) -> NgramVocabulary:
        path = Path(directory) / NGRAMS_FILE
        if not path.is_file():
            raise OhloraError(f"{path} is missing: the guard's policy names n-grams {list(sizes)} but has no vocabulary")
        grams = tuple(path.read_text(encoding="utf-8").split("\n")[:-1])
        return cls(tuple(sizes), grams)


def beside(x: np.ndarray, prepared: list[str], ngrams: NgramVocabulary | None) -> np.ndarray:
    """(N, D) embeddings of the prepared messages -> (N, D + V) with their n-grams beside them
    (the feature layout a head with a vocabulary reads); `ngrams` None: `x` as it is."""
    return np.concatenate([x, ngrams.features(prepared)], axis=1) if ngrams is not None else x
