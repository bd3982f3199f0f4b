"""LoopGuard: a decoding constraint that keeps an answer from looping (an n-gram of generated
tokens may occur at most `max_count` times). The prompt format carries its settings; every
generator applies it through an NgramTracker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopGuard:
    """No n-gram of `ngram` generated tokens may occur more than `max_count` times: a token that
    would complete one more occurrence is masked. HF's no_repeat_ngram_size is max_count=1; 2 lets
    an answer echo its tag's value (`[좋아하는 꽃: 해바라기] 해바라기 보면...`), which 1 would forbid."""

    ngram: int = 0
    """0: off."""
    max_count: int = 2

    def tracker(self) -> "NgramTracker | None":
        return NgramTracker(self.ngram, self.max_count) if self.ngram > 0 else None


class NgramTracker:
    """The n-grams of one generation so far; `banned()` lists the token ids masked at the next step."""

    def __init__(self, n: int, max_count: int):
        self.n, self.max_count = n, max_count
        self.ids: list[int] = []
        self.next: dict[tuple[int, ...], dict[int, int]] = {}  # (n-1)-gram -> {next token: count}

    def push(self, token: int) -> None:
        self.ids.append(int(token))
        if len(self.ids) >= self.n:
            after = self.next.setdefault(tuple(self.ids[len(self.ids) - self.n:-1]), {})
            after[self.ids[-1]] = after.get(self.ids[-1], 0) + 1

    def banned(self) -> list[int]:
        if len(self.ids) < self.n - 1:
            return []
        after = self.next.get(tuple(self.ids[len(self.ids) - self.n + 1:]), {})
        return [t for t, c in after.items() if c >= self.max_count]
