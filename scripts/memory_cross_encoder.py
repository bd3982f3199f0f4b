"""Second recall stage, option (a): a cross-encoder that reads item and message together.

An experiment script (not the package's path): EmbeddingGemma-300M (bidirectional) with its own
LoRA adapter and a linear head on its pooled, Dense-projected output reads
"기억: [key: value]\\n메시지: ..." and scores how related the two are. Per step: `msgs` training
messages, each with one same-key item (positive) and three negatives (two from keys that share a
word with it, the hardest kind, one at random), 4 x msgs pairs; loss = BCE + listwise
cross-entropy over each message's four candidates.

Evaluation: stage 1 is a memory encoder's cosine (the zero-shot EmbeddingGemma by default, or
`stage1=DIR`); its top `shortlist` items per message are re-scored by the cross-encoder, the
threshold on the sigmoid is chosen on the validation split for false recall <= 10%, and the same
threshold is applied to the test split. Prints the metrics and the time to score a shortlist.

    OHLORA_HOME=/tmp/ohreal python scripts/memory_cross_encoder.py steps=250 msgs=8 [stage1=DIR]
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> None:
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    from ohlora.evaluation.recall import recall_report, split_scores
    from ohlora.memory.encoder import pooled_states
    from ohlora.memory.loading import load_memory_encoder
    from ohlora.memory.recall import Decider, RecallPolicy
    from ohlora.models import set_cpu_threads
    from ohlora.training.llm_config import bundled
    from ohlora.training.memory import load_encoder_backbone
    from ohlora.datasets.combinations import key_similarity, load_combs, load_synonyms
    from ohlora.training.recall_fit import choose_threshold

    args = dict(a.split("=", 1) for a in argv)
    steps, n_msgs = int(args.get("steps", 250)), int(args.get("msgs", 8))
    shortlist, lr = int(args.get("shortlist", 10)), float(args.get("lr", 2e-4))
    set_cpu_threads(int(args.get("threads", 0)) or None)
    torch.manual_seed(0)
    rng = random.Random(0)
    syn = load_synonyms()
    data = Path(bundled("data", "memory"))
    train, valid, test = (load_combs(data / f"{s}_combs.txt") for s in ("train", "valid", "test"))
    model, tok, _, head = load_encoder_backbone("embeddinggemma-300m")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    score_head = torch.nn.Linear(head[-1].out_features, 1)
    torch.nn.init.normal_(score_head.weight, std=0.02)
    opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr},
                             {"params": score_head.parameters(), "lr": 1e-3}])

    def text(item: str, msg: str) -> str:
        return f"기억: {item}\n메시지: {msg}"

    def logits(pairs: list[tuple[str, str]]):
        p = pooled_states(model, tok, [text(i, m) for i, m in pairs], "mean_all", head=head)
        return score_head(F.normalize(p.vec, dim=-1)).squeeze(-1)  # (P,)

    by_key: dict[str, list] = {}
    for c in train:
        by_key.setdefault(syn.get(c.key, c.key), []).append(c)
    keys = list(by_key)
    near = {k: [o for o in keys if o != k and 0 < key_similarity(k, o, syn) < 1] for k in keys}
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        pairs, labels = [], []
        for c in rng.sample(train, n_msgs):
            k = syn.get(c.key, c.key)
            pos = rng.choice([o for o in by_key[k] if o.message != c.message] or by_key[k])
            pool = near[k] or [o for o in keys if o != k]
            negs = [rng.choice(by_key[rng.choice(pool)]) for _ in range(2)]
            negs.append(rng.choice(by_key[rng.choice([o for o in keys if o != k])]))
            for item, y in [(pos, 1.0)] + [(n, 0.0) for n in negs]:
                pairs.append((item.memory, c.message))
                labels.append(y)
        z = logits(pairs)
        y = torch.tensor(labels)
        loss = F.binary_cross_entropy_with_logits(z, y) + F.cross_entropy(z.view(n_msgs, 4), torch.zeros(
            n_msgs, dtype=torch.long))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval()
    minutes = (time.perf_counter() - t0) / 60

    stage1 = load_memory_encoder(args.get("stage1", "base"), "embeddinggemma-300m")
    results = {"train_minutes": round(minutes, 1), "steps": steps, "pairs_per_step": 4 * n_msgs}
    thresholds = {}
    for name, split in (("valid", valid), ("test", test)):
        s = split_scores(stage1, Decider(RecallPolicy()), split, syn)
        final = np.full_like(s.cos, -np.inf)
        t = time.perf_counter()
        with torch.inference_mode():
            for m in range(len(split)):
                short = np.argsort(-s.cos[m], kind="stable")[:shortlist]
                z = logits([(s.items[i], s.messages[m]) for i in short])
                final[m, short] = torch.sigmoid(z).numpy()
        ms = 1000 * (time.perf_counter() - t) / len(split)
        if name == "valid":
            thresholds["cross"], _ = choose_threshold(final, s.truth, 0.10)
            thresholds["cosine"], _ = choose_threshold(s.cos, s.truth, 0.10)
        tk = {c.key for c in train}
        s_cross = s.__class__(**{**s.__dict__, "final": final})
        s_cos = s.__class__(**{**s.__dict__, "final": s.cos})
        results[name] = {"cross": recall_report(s_cross, thresholds["cross"], tk, syn),
                         "cosine": recall_report(s_cos, thresholds["cosine"], tk, syn),
                         "cross_ms_per_message": round(ms, 1)}
    results["thresholds"] = thresholds
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main(sys.argv[1:])
