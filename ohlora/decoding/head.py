"""The restricted output head: which token ids a persona's answers may use (head_vocab.json,
saved beside an adapter), and the model's own output head and logit softcap."""

from __future__ import annotations

import json
import re
from pathlib import Path

VOCAB_FILE = "head_vocab.json"
HANGUL = re.compile(r"[가-힣ㄱ-ㅎㅏ-ㅣ]")


def build_head_vocab(tokenizer, texts: list[str], short_ascii: int = 2) -> list[int]:
    """Token ids the persona can use: Hangul, symbols/digits/emoji, ASCII pieces of at most
    `short_ascii` characters (any word can still be spelled), special tokens, and every token of `texts`."""
    keep = set(tokenizer.all_special_ids)
    for i, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        s = (piece or "").replace("\u2581", " ").strip()
        if not s:
            keep.add(i)  # whitespace tokens
        elif HANGUL.search(s) or not any(c.isalpha() for c in s):
            keep.add(i)  # Korean, or no letters at all: digits, punctuation, emoji, symbols
        elif s.isascii() and len(s) <= short_ascii:
            keep.add(i)
    for t in texts:
        keep.update(tokenizer(t, add_special_tokens=False)["input_ids"])
    return sorted(keep)


def save_head_vocab(ids: list[int], directory: Path) -> Path:
    path = Path(directory) / VOCAB_FILE
    path.write_text(json.dumps({"size": len(ids), "ids": ids}), encoding="utf-8")
    return path


def load_head_vocab(directory: Path) -> list[int] | None:
    path = Path(directory) / VOCAB_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["ids"]


def lm_head_of(model) -> tuple[object, float | None]:
    """The output head and final-logit softcap of a (PEFT-wrapped) causal LM."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    return inner.get_output_embeddings(), getattr(config, "final_logit_softcapping", None)
