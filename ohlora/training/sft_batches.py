"""Turn SFT rows into token ids with answer-only labels, and pad them into batches."""

from __future__ import annotations

from ohlora.datasets.sft import SFTRow
from ohlora.persona import PersonaCard
from ohlora.prompt import PromptFormat

IGNORE = -100


def encode_row(row: SFTRow, tokenizer, fmt: PromptFormat, card: PersonaCard, max_length: int) -> dict | None:
    """input_ids = prompt + "{answer} (답변 종료)" + EOS; labels are IGNORE over the prompt.

    The prompt is tokenized on its own, exactly as the chat tokenizes it at inference, so the
    boundary between prompt and answer is the same in training and in chat.
    Returns None when truncation would leave no answer token.
    """
    prompt_ids = tokenizer(row.prompt(fmt, card))["input_ids"]
    answer_ids = tokenizer(fmt.target(row.output), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]
    if all(x == IGNORE for x in labels):
        return None
    return {"input_ids": ids, "labels": labels, "length": len(ids)}


def collate(features: list[dict], pad_id: int) -> dict:
    """Right-pad to the longest row: input_ids, attention_mask, labels, each (B, T)."""
    # lazy: torch loads only when this runs
    import torch

    T = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), T), pad_id, dtype=torch.long)
    labels = torch.full((len(features), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(features), T), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
