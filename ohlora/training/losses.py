"""Causal-LM losses: the plain full-logits path and the answer-only path ohlora trains with.

With a 262k-token vocabulary the LM head (and its log-softmax) is most of a CPU training step.
Only positions that predict an answer token carry loss, so the answer-only path runs the backbone
once, then applies the head to those positions alone. Same loss, a fraction of the head's work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ohlora.decoding.head import lm_head_of
from ohlora.training.sft_batches import IGNORE


def full_logits_loss(model, batch: dict) -> torch.Tensor:
    """The plain Hugging Face path: logits for every position, then the loss."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                 use_cache=False).loss


def answer_only_loss(model, batch: dict, head: torch.nn.Module, softcap: float | None = None) -> torch.Tensor:
    """Mean cross-entropy over answer tokens, with the head applied only where labels exist.

    The forward goes through `model(...)` itself (not its submodules), so DDP under `accelerate
    launch` still sees it and syncs gradients; the head's weights are frozen, so applying it
    outside that call needs no gradient sync.
    """
    no_positions = torch.empty(0, dtype=torch.long, device=batch["input_ids"].device)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=True, logits_to_keep=no_positions, use_cache=False)  # logits: (B, 0, V)
    hidden = out.hidden_states[-1]  # (B, T, H), after the final norm: the head's input
    target = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t+1
    keep = target != IGNORE  # (B, T-1)
    logits = head(hidden[:, :-1][keep]).float()  # (N, V), N = answer tokens in the batch
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, target[keep])


def check_answer_only_path(model, batch: dict) -> float:
    """Both paths on one batch; returns |difference| (should be ~1e-6). Also proves that the last
    hidden state is what the head reads for this architecture."""
    head, softcap = lm_head_of(model)
    was_training = model.training
    model.eval()  # dropout off: with trained LoRA weights (init_adapter) it would make the paths differ
    try:
        with torch.no_grad():
            a = full_logits_loss(model, batch).item()
            b = answer_only_loss(model, batch, head, softcap).item()
    finally:
        model.train(was_training)
    return abs(a - b)
