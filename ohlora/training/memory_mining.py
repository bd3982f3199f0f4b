"""Hard negatives for `ohlora train memory`: the keys the encoder itself confuses.

Before the first step, every training message and every distinct training item is encoded by the
model about to be trained (its LoRA starts at zero, so this is the base encoder's view). For each
message, the items of other keys that rank above the best item of its own key (synonyms count as
its own; keys sharing words count too, since their target is partial) are its encoder's mistakes;
each such (own key, other key) is counted. The grouped sampler then puts confused keys into the
same step, so the K x K matrix holds the pairs the encoder gets wrong instead of mostly easy
random ones.
"""

from __future__ import annotations

from collections import Counter

from tqdm import tqdm

from ohlora.datasets.combinations import Comb


def mine_confusions(embed, combs: list[Comb], synonyms: dict[str, str], per_message: int = 3,
                    chunk: int = 64) -> dict[str, Counter]:
    """{canonical key: Counter(confused canonical key: times)} from `embed(texts, side)` -> (N, H)
    unit vectors (a TrainEmbedder; called without gradients). Per message at most `per_message`
    other keys are counted: those of the items ranked above its own key's best item."""
    # lazy: torch loads only when this runs
    import torch

    canon = lambda k: synonyms.get(k, k)  # noqa: E731
    items = sorted({c.memory: canon(c.key) for c in combs}.items())
    item_keys = [k for _, k in items]

    def encode(texts, side):
        with torch.no_grad():
            parts = [embed(texts[i:i + chunk], side)[0].float()
                     for i in tqdm(range(0, len(texts), chunk), desc=f"mining ({side})", unit="chunk", leave=False)]
        return torch.cat(parts)

    vi = encode([m for m, _ in items], "item")  # (I, H)
    vq = encode([c.message for c in combs], "query")  # (N, H)
    sims = vq @ vi.T  # (N, I)
    out: dict[str, Counter] = {}
    for c, row in zip(combs, sims):
        own = canon(c.key)
        order = torch.argsort(row, descending=True).tolist()
        seen: list[str] = []
        for j in order:
            k = item_keys[j]
            if k == own:
                break
            if k not in seen:
                seen.append(k)
                if len(seen) == per_message:
                    break
        if seen:
            out.setdefault(own, Counter()).update(seen)
    return out


def confusion_table(confusions: dict[str, Counter], top: int | None = None) -> list[dict]:
    """Every confusion (or the `top` most frequent), most frequent first: the record beside the adapter."""
    rows = [{"key": k, "confused_with": o, "messages": n} for k, c in confusions.items() for o, n in c.items()]
    return sorted(rows, key=lambda r: (-r["messages"], r["key"], r["confused_with"]))[:top]
