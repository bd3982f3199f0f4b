"""Memory "key writer" experiment: score (message, item) by P(item's key | message), not by a cosine.

Not part of the package: a negative result behind the memory-model issue's closing note. It
trains a LoRA on the embedded base to write a message's memory key after the package's query
prompt (`CAUSAL_QUERY_TEMPLATE`, full-vocabulary LM loss on the key and its closing quote), then,
for every test message and every key of the test memories, computes log P(key | message).
Scores tried on the test split (90 messages x 90 memories, 8,100 cartesian pairs):

- joint: P(key | message) itself;
- expIoU: sum over candidate keys k of P(k | m) * IoU(item key, k), the expected target;
- expIoU-norm: the same with P renormalized over the candidate keys;
- blend=CSV (optional): (cosine + b * expIoU-norm) / (1 + b) for b in 0.25, 0.5, 1, with the
  cosines read from the pair CSV `ohlora eval memory` writes.

Example (about 8 minutes of training and 2 of scoring on 2 cores):

    OHLORA_HOME=... python scripts/memory_keywriter.py steps=300 \
        blend=$OHLORA_HOME/eval/memory/memory_pairs.csv

Options (key=value): steps, bs (lines per step), lr, r (LoRA rank), seed, threads, save (adapter
dir to write), blend (pair CSV of a cosine encoder on the bundled test split).
"""

import csv
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import set_seed

from ohlora.evaluation.metrics import regression_metrics, retrieval_metrics
from ohlora.memory.encoder import pooled_states
from ohlora.models import set_cpu_threads
from ohlora.training.llm_config import bundled
from ohlora.training.memory import CAUSAL_QUERY_TEMPLATE, load_encoder_backbone
from ohlora.datasets.combinations import key_similarity, load_combs, load_synonyms
from ohlora.training.memory_embed import KEY_END


def key_logprobs(model, tok, head, prompts: list[str], keys: list[str]):
    """(N,) log P(key + closing quote | prompt), full vocabulary; with gradients if enabled."""
    p = pooled_states(model, tok, prompts, "last", continuations=[k + KEY_END for k in keys])
    pos = [(i, t) for i, (n, end) in enumerate(zip(p.prompt_lens, p.lens)) for t in range(n - 1, end - 1)]
    rows = torch.tensor([i for i, _ in pos])
    cols = torch.tensor([t for _, t in pos])
    logits = (p.hidden[rows, cols] @ head.weight.T).float()  # (P, vocab): only the key positions
    lp = torch.log_softmax(logits, -1)[torch.arange(len(pos)), p.input_ids[rows, cols + 1]]  # (P,)
    return torch.zeros(len(prompts)).index_add(0, rows, lp)


def metrics_of(sims, test, msgs, mems, syn, train_keys) -> dict:
    """Package metrics for a (messages, memories) score matrix, plus rank-1 on held-out/seen keys."""
    kq, km = {c.message: c.key for c in test}, {c.memory: c.key for c in test}
    qi, mi = {q: i for i, q in enumerate(msgs)}, {m: i for i, m in enumerate(mems)}
    truth = np.array([[key_similarity(kq[q], km[m], syn) for m in mems] for q in msgs])
    pred = np.array([sims[qi[b.message], mi[c.memory]] for c in test for b in test])
    true = np.array([key_similarity(c.key, b.key, syn) for c in test for b in test])
    m = {**regression_metrics(pred, true), **retrieval_metrics(sims, truth, 0.6)}
    held = np.array([kq[q] not in train_keys for q in msgs])
    hit = truth[np.arange(len(msgs)), sims.argmax(1)] >= 1
    m.update(rank1_held=hit[held].mean(), rank1_seen=hit[~held].mean())
    return m


def show(name: str, m: dict) -> None:
    print(f"{name:16s}", " ".join(f"{k}={float(v):.4f}" for k, v in m.items()), flush=True)


def main(a: dict) -> None:
    steps, bs, lr, rank = int(a.get("steps", 300)), int(a.get("bs", 16)), float(a.get("lr", 3e-4)), int(a.get("r", 16))
    set_cpu_threads(int(a.get("threads", 2)))
    set_seed(int(a.get("seed", 42)))
    syn = load_synonyms()
    train = load_combs(Path(bundled("data", "memory", "train_combs.txt")))
    test = load_combs(Path(bundled("data", "memory", "test_combs.txt")))
    model, tok, _, _ = load_encoder_backbone("gemma-3-270m")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))
    head = model.get_base_model().get_output_embeddings()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * max(0.0, 1 - s / steps))
    rng = random.Random(int(a.get("seed", 42)))
    t0 = time.time()
    model.train()
    for step in range(steps):
        b = rng.sample(train, bs)
        loss = -key_logprobs(model, tok, head, [CAUSAL_QUERY_TEMPLATE.format(c.message) for c in b],
                             [c.key for c in b]).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0:
            print(step, round(loss.item(), 3), round(time.time() - t0), flush=True)
    print(f"training: {(time.time() - t0) / 60:.1f} min", flush=True)
    model.eval()
    if a.get("save"):
        model.save_pretrained(a["save"])

    msgs, mems = sorted({c.message for c in test}), sorted({c.memory for c in test})
    keys = sorted({c.key for c in test})
    grid = [(i, j) for i in range(len(msgs)) for j in range(len(keys))]
    L = np.zeros((len(msgs), len(keys)))  # log P(key j | message i)
    t0 = time.time()
    with torch.inference_mode():
        for s in range(0, len(grid), 40):
            chunk = grid[s:s + 40]
            lp = key_logprobs(model, tok, head, [CAUSAL_QUERY_TEMPLATE.format(msgs[i]) for i, _ in chunk],
                              [keys[j] for _, j in chunk])
            for (i, j), v in zip(chunk, lp.tolist()):
                L[i, j] = v
    print(f"scoring: {time.time() - t0:.0f} s", flush=True)

    iou = np.array([[key_similarity(x, y, syn) for y in keys] for x in keys])  # (keys, keys)
    item_key = [keys.index(c) for c in (dict((c.memory, c.key) for c in test)[m] for m in mems)]
    P = np.exp(L)
    Pn = P / P.sum(1, keepdims=True)
    train_keys = {c.key for c in train}
    per_key = {"joint": P, "expIoU": P @ iou.T, "expIoU-norm": Pn @ iou.T}  # (messages, keys)
    for name, S in per_key.items():
        show(name, metrics_of(S[:, item_key], test, msgs, mems, syn, train_keys))
    if a.get("blend"):
        with open(a["blend"], encoding="utf-8") as f:
            cos = {(r["prompt"], r["memory"]): float(r["predicted"]) for r in csv.DictReader(f)}
        C = np.array([[cos[(q, m)] for m in mems] for q in msgs])  # (messages, memories)
        E = per_key["expIoU-norm"][:, item_key]
        for w in (0, 0.25, 0.5, 1.0):
            show(f"blend b={w}", metrics_of((C + w * E) / (1 + w), test, msgs, mems, syn, train_keys))


if __name__ == "__main__":
    main(dict(x.split("=", 1) for x in sys.argv[1:]))
