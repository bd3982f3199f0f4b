"""Memory-encoder screening: short matrix-loss runs of loss / pooling / LoRA variants, one per call.

Not part of the package: the ablations behind the memory-model issue's closing note. Each call
trains a fresh LoRA on the embedded base with grouped matrix sampling and prints test metrics,
with top-1 ranking split into seen and held-out keys, and writes each test message's top 3 to
/tmp/scr/TAG.errors. Example:

    OHLORA_HOME=... python scripts/memory_screen.py steps=120 k=16 nce=0.2 tag=nce

Options (key=value): steps, k, layer (pool the output of this layer; -1 = the last), nce (weight
of a multi-positive InfoNCE term), tau (its temperature), posw (weight of same-key pairs in the
MSE), targets (comma-separated LoRA targets), lr, r (LoRA rank), train (combinations file;
default: the bundled one), tmpl (none, prefix, eol, eol2, kind, kind2: the prompt each side is
wrapped in), pool (mean, last, lastmean), gen (weight of the key loss), threads, tag (printed with
the result), save (adapter dir to write).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import set_seed

from ohlora.evaluation.metrics import regression_metrics, retrieval_metrics
from ohlora.memory.encoder import EncoderFormat
from ohlora.models import set_cpu_threads
from ohlora.training.llm_config import bundled
from ohlora.training.memory import (CAUSAL_ITEM_TEMPLATE, CAUSAL_QUERY_TEMPLATE, MatrixSampler,
                                    load_encoder_backbone)
from ohlora.training.memory_embed import TrainEmbedder
from ohlora.datasets.combinations import key_similarity, load_combs, load_synonyms


def main(a: dict) -> None:
    steps, k, layer = int(a.get("steps", 120)), int(a.get("k", 16)), int(a.get("layer", -1))
    nce, tau, posw = float(a.get("nce", 0)), float(a.get("tau", 0.05)), float(a.get("posw", 1))
    targets = a.get("targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj").split(",")
    lr, rank = float(a.get("lr", 5e-4)), int(a.get("r", 16))
    syn = load_synonyms(Path(bundled("memory_synonyms.yaml")))
    train = load_combs(Path(a.get("train", bundled("data", "memory", "train_combs.txt"))))
    test = load_combs(Path(bundled("data", "memory", "test_combs.txt")))
    set_seed(42)
    set_cpu_threads(int(a.get("threads", 2)))
    model, tok, _, _ = load_encoder_backbone("gemma-3-270m")
    if layer != -1:  # keep the first `layer` layers: pooling then reads that layer's output
        model.model.layers = model.model.layers[:layer]
        model.config.num_hidden_layers = layer
        model.config.layer_types = model.config.layer_types[:layer]
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * max(0.0, 1 - s / steps) ** 0.5)

    tmpl, pool, gen = a.get("tmpl", "none"), a.get("pool", "mean"), float(a.get("gen", 0))
    templates = {  # (memory side, message side)
        "none": ("{}", "{}"),
        "prefix": ("기억: {}", "메시지: {}"),
        "eol": ('문장 "{}" 의 주제를 한 단어로 말하면 "', '문장 "{}" 의 주제를 한 단어로 말하면 "'),
        "eol2": ('기억 "{}" 의 주제를 한 단어로 말하면 "', '메시지 "{}" 의 주제를 한 단어로 말하면 "'),
        "kind": (CAUSAL_ITEM_TEMPLATE, CAUSAL_QUERY_TEMPLATE),  # the package's defaults
        "kind2": ('기억: {}\n종류: "', '메시지: {}\n관련된 기억의 종류: "'),
    }
    fmt = EncoderFormat(pool, *templates[tmpl])
    embed = TrainEmbedder(model, tok, fmt, -1, keys=[c.key for c in train] if gen > 0 else None)

    sampler = MatrixSampler(train, syn, k, 0.5, 42, grouped=True)
    t0 = time.time()
    model.train()
    for step in range(steps):
        mems, msgs, truth, mkeys, qkeys = sampler.sample(with_keys=True)
        em, aux_m = embed(mems, "item", mkeys)  # aux: the key loss, 0.0 when gen is 0
        eq, aux_q = embed(msgs, "query", qkeys)
        pred = em @ eq.T  # (K, K) cosines
        target = torch.tensor(truth, dtype=pred.dtype)
        w = torch.where(target >= 1.0, posw, 1.0)
        loss = (w * (pred - target) ** 2).sum() / w.sum()
        if nce > 0:  # multi-positive InfoNCE both ways: same-key cells are the positives
            pos, logits = target >= 1.0, pred / tau
            cols = torch.logsumexp(logits.masked_fill(~pos, -1e9), 0) - torch.logsumexp(logits, 0)
            rows = torch.logsumexp(logits.masked_fill(~pos, -1e9), 1) - torch.logsumexp(logits, 1)
            loss = loss - nce * 0.5 * (cols.mean() + rows.mean())
        loss = loss + gen * 0.5 * (aux_m + aux_q)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            print(step, round(loss.item(), 4), round(time.time() - t0), flush=True)
    minutes = (time.time() - t0) / 60
    model.eval()
    mem, msg = sorted({c.memory for c in test}), sorted({c.message for c in test})
    with torch.inference_mode():
        enc = lambda t, side: torch.cat([embed(t[i:i + 16], side)[0] for i in range(0, len(t), 16)]).numpy()  # noqa: E731
        sims = enc(msg, "query") @ enc(mem, "item").T  # (messages, memories)
    mkey, qkey = {c.memory: c.key for c in test}, {c.message: c.key for c in test}
    truth = np.array([[key_similarity(qkey[q], mkey[m], syn) for m in mem] for q in msg])
    qi, mi = {q: i for i, q in enumerate(msg)}, {m: i for i, m in enumerate(mem)}
    pred = np.array([sims[qi[b.message], mi[c.memory]] for c in test for b in test])  # the cartesian pairs
    true = np.array([key_similarity(c.key, b.key, syn) for c in test for b in test])
    m = {**regression_metrics(pred, true), **retrieval_metrics(sims, truth, 0.6)}
    held = np.array([qkey[q] not in {c.key for c in train} for q in msg])
    hit = truth[np.arange(len(msg)), sims.argmax(1)] >= 1  # right key ranked first, threshold aside
    m.update(rank1=hit.mean(), rank1_held=hit[held].mean(), rank1_seen=hit[~held].mean(),
             top1_held=(hit & (sims.max(1) >= 0.6))[held].mean(), pos_mean=sims[truth >= 1].mean(),
             neg_mean=sims[truth == 0].mean(), minutes=minutes)
    with open(f"/tmp/scr/{a.get('tag', 'run')}.errors", "w") as f:
        for q in msg:
            r = sims[qi[q]]
            top = np.argsort(-r)[:3]
            ok = "OK " if truth[qi[q], top[0]] >= 1 and r[top[0]] >= 0.6 else ("RNK" if truth[qi[q], top[0]] >= 1 else "BAD")
            f.write(f"{ok} [{qkey[q]}] {q} -> " + " | ".join(f"{mem[j]} {r[j]:.2f}" for j in top) + "\n")
    print("RESULT", a.get("tag", "run"), json.dumps({k: round(float(v), 4) for k, v in m.items()}), flush=True)
    if a.get("save"):
        model.save_pretrained(a["save"])


if __name__ == "__main__":
    main(dict(x.split("=", 1) for x in sys.argv[1:]))
