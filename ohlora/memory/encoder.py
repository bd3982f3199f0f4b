"""Memory encoders: turn texts into L2-normalized vectors whose cosine says how related they are.

- `HiddenStateEncoder`: pooled hidden states of a model (the chat's own base model, so one model in
  memory serves both); with `adapter` set, a LoRA adapter trained for memory (`ohlora train memory`)
  is switched on while encoding and off again afterwards.
- `EncoderFormat` says how a text becomes a vector: the prompt each side is wrapped in (stored
  items and user messages may get different ones, as E5-style "query:/passage:" prefixes do) and
  the pooling. It is saved beside the adapter it was trained with, like the chat's prompt format.
- Any Hugging Face encoder (klue/roberta-base, a sentence-transformers checkpoint directory, ...)
  goes through the same class: AutoModel + mean pooling, as sentence-transformers does.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import NamedTuple, Protocol

import numpy as np

from ohlora.errors import OhloraError

POOLINGS = ("mean", "last", "lastmean")


class MemoryEncoder(Protocol):
    id: str
    """Identifies the encoder in the embedding cache: change it and items are re-encoded."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """Stored items `[key: value]` -> (N, D) float32, each row L2-normalized."""
        ...

    def encode_query(self, texts: list[str]) -> np.ndarray:
        """User messages -> (N, D) float32 in the same space as `encode`."""
        ...


@dataclass(frozen=True)
class EncoderFormat:
    """How a text is wrapped and pooled. `{}` in a template stands for the text."""

    pooling: str = "mean"
    """"mean": mean over the text's tokens (BOS out); "last": the hidden state of the prompt's last
    token, which in a causal LM has seen the whole text (PromptEOL-style: the template ends where
    the model would name the topic); "lastmean": the sum of both."""
    item_template: str = "{}"
    query_template: str = "{}"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise OhloraError(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        for t in (self.item_template, self.query_template):
            if t.count("{}") != 1:
                raise OhloraError(f"an encoder template needs exactly one {{}} for the text: {t!r}")

    @classmethod
    def from_dict(cls, data: dict | None) -> "EncoderFormat":
        data = data or {}
        return cls(**{k: data[k] for k in ("pooling", "item_template", "query_template") if k in data})

    def as_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """'' for the plain mean-pooling format (old cache ids stay valid), else a short hash."""
        if self == EncoderFormat():
            return ""
        return hashlib.sha1(repr(sorted(self.as_dict().items())).encode()).hexdigest()[:8]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def backbone(model):
    """The transformer without its LM head: a causal LM's decoder (its LoRA layers included), or
    an encoder model itself. Pooling never needs the (N, T, vocab) logits, the costliest part."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(inner, "get_decoder") and inner.get_output_embeddings() is not None:
        return inner.get_decoder()
    return inner


class Pooled(NamedTuple):
    vec: "object"  # (N, H) pooled, not normalized
    hidden: "object"  # (N, T, H) the pooled layer's states
    input_ids: "object"  # (N, T) right-padded
    prompt_lens: list[int]
    lens: list[int]  # prompt + continuation


def pooled_states(model, tokenizer, prompts: list[str], pooling: str = "mean", layer: int = -1,
                  continuations: list[str] | None = None) -> Pooled:
    """Pool one layer's hidden states over each prompt. Runs with gradients if the caller has them
    on (training).

    `continuations` (training only) are appended after each prompt, tokenized apart so that the
    prompt's tokens stay exactly those used at inference; the model is causal, so the pooled prompt
    positions never see them, while the caller can put an LM loss on them.

    Gemma's BOS position carries a hidden state with a norm far above the others; leaving it in
    the mean makes every pair of texts look alike, so it is dropped from the mean.
    """
    import torch

    ids = [tokenizer(p).input_ids for p in prompts]
    plen = [len(x) for x in ids]
    if continuations is not None:
        ids = [x + tokenizer(c, add_special_tokens=False).input_ids for x, c in zip(ids, continuations)]
    T = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.device
    input_ids = torch.tensor([x + [pad] * (T - len(x)) for x in ids], device=device)  # (N, T), right-padded
    attn = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in ids], device=device)  # (N, T)
    out = backbone(model)(input_ids=input_ids, attention_mask=attn, output_hidden_states=True)
    hs = out.hidden_states[layer]  # (N, T, H)
    rows = torch.arange(len(prompts), device=device)
    mean = last = None
    if pooling in ("mean", "lastmean"):
        bos = tokenizer.bos_token_id
        m = torch.zeros(len(prompts), T, dtype=hs.dtype, device=device)  # (N, T): prompt tokens, BOS out
        for i, n in enumerate(plen):
            m[i, :n] = 1
            if bos is not None and ids[i][0] == bos and n > 1:
                m[i, 0] = 0
        mean = (hs * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1)  # (N, H)
    if pooling in ("last", "lastmean"):
        last = hs[rows, torch.tensor(plen, device=device) - 1]  # (N, H)
    pooled = mean if last is None else last if mean is None else mean + last
    return Pooled(pooled, hs, input_ids, plen, [len(x) for x in ids])


class HiddenStateEncoder:
    """Pooled hidden states; optionally with a named PEFT adapter active while encoding."""

    def __init__(self, model, tokenizer, layer: int = -1, name: str = "base", batch_size: int = 16,
                 adapter: str | None = None, fmt: EncoderFormat | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.layer = layer
        self.batch_size = batch_size
        self.adapter = adapter
        self.fmt = fmt or EncoderFormat()
        fp = self.fmt.fingerprint()
        self.id = (f"hidden-mean:{name}:layer{layer}" + (f":{adapter}" if adapter else "")
                   + (f":fmt-{fp}" if fp else ""))

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.fmt.item_template.format(t) for t in texts])

    def encode_query(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.fmt.query_template.format(t) for t in texts])

    def _encode(self, prompts: list[str]) -> np.ndarray:
        import torch

        from ohlora.models import use_adapter

        if not prompts:
            return np.zeros((0, 0), dtype=np.float32)
        out = []
        with torch.inference_mode(), use_adapter(self.model, self.adapter):
            for i in range(0, len(prompts), self.batch_size):
                pooled = pooled_states(self.model, self.tokenizer, prompts[i:i + self.batch_size],
                                       self.fmt.pooling, self.layer).vec
                out.append(pooled.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))
