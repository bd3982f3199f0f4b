"""PrefixCache: the KV cache of the last call and the token ids it holds, so the next prompt
runs only the tokens after their longest common prefix (the persona and the turns already shown
stay cached across chat turns).

The cache is LeanGemma3's: a dict with "k" and "v" of shape (L, KV heads, capacity, D) and "len",
the positions filled. llama.cpp keeps its own cache; its engine uses `shared_prefix` alone.
"""

from __future__ import annotations

from typing import Callable


def shared_prefix(held: list[int], ids: list[int]) -> int:
    """How many leading tokens of `ids` a cache holding `held` already has: their longest common
    prefix, leaving at least one token of `ids` to run (its hidden state gives the next logits)."""
    n = 0
    for a, b in zip(held, ids):
        if a != b:
            break
        n += 1
    return max(0, min(n, len(ids) - 1))


class PrefixCache:
    """One sequence's reusable cache. `take` hands out a cache for the next prompt and how many of
    its tokens are already in it; `hold` records what the cache holds after the call."""

    def __init__(self, min_capacity: int = 256):
        self.min_capacity = min_capacity
        self.ids: list[int] = []
        """Token ids whose keys and values are in `cache` (positions 0..len-1)."""
        self.cache: dict | None = None
        self.reused = 0
        """Prompt tokens the last `take` found in the cache instead of running."""

    def take(self, ids: list[int], need: int, new_cache: Callable[[int], dict]) -> tuple[dict, int]:
        """(cache, start) for a prompt `ids` that will grow to `need` positions: the held cache cut
        to the shared prefix (grown to `need` if too small), or a new one; only `ids[start:]`
        must run."""
        n = shared_prefix(self.ids[:self.cache["len"]], ids) if self.cache is not None else 0
        if n == 0:
            self.reused = 0
            return new_cache(max(need, self.min_capacity)), 0
        cache = self.cache
        if cache["k"].shape[2] < need:  # (L, KV, capacity, D): copy the kept positions into a bigger one
            bigger = new_cache(need)
            bigger["k"][:, :, :n], bigger["v"][:, :, :n] = cache["k"][:, :, :n], cache["v"][:, :, :n]
            cache = bigger
        cache["len"] = n
        self.reused = n
        return cache, n

    def hold(self, ids: list[int], cache: dict) -> list[int]:
        """Remember that `cache` holds `ids`; returns the list, to which the caller appends each
        token it feeds afterwards."""
        self.ids, self.cache = list(ids), cache
        return self.ids

    def clear(self) -> None:
        """Forget the held cache: the next prompt runs whole."""
        self.ids, self.cache, self.reused = [], None, 0
