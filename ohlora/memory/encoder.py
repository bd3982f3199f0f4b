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
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from ohlora.errors import OhloraError
from ohlora.models import use_adapter

POOLINGS = ("mean", "mean_all", "last", "lastmean")


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
    """"mean": mean over the text's tokens (BOS out); "mean_all": mean over every token, special
    tokens included (sentence-transformers' mean pooling, what EmbeddingGemma was trained with);
    "last": the hidden state of the prompt's last token, which in a causal LM has seen the whole
    text (PromptEOL-style: the template ends where the model would name the topic); "lastmean":
    the sum of "mean" and "last"."""
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


def load_sentence_head(model_dir):
    """The Dense layers a sentence-transformers directory applies after pooling (EmbeddingGemma:
    768 -> 3072 -> 768, no bias, identity activation) as one frozen torch module, or None.

    Read from its modules.json without importing sentence-transformers."""

    # lazy: safetensors, torch load only when this runs
    import torch
    from safetensors.torch import load_file

    root = Path(model_dir)
    spec = root / "modules.json"
    if not spec.is_file():
        return None
    layers = []
    for mod in json.loads(spec.read_text(encoding="utf-8")):
        if not mod.get("type", "").endswith("models.Dense"):
            continue
        cfg = json.loads((root / mod["path"] / "config.json").read_text(encoding="utf-8"))
        if not cfg.get("activation_function", "").endswith("Identity"):
            raise OhloraError(f"{root}: Dense activation {cfg.get('activation_function')} is not supported")
        lin = torch.nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
        state = load_file(str(root / mod["path"] / "model.safetensors"))
        lin.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        layers.append(lin)
    if not layers:
        return None
    head = torch.nn.Sequential(*layers).float()
    head.requires_grad_(False)
    return head


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
                  continuations: list[str] | None = None, head=None) -> Pooled:
    """Pool one layer's hidden states over each prompt. Runs with gradients if the caller has them
    on (training).

    `continuations` (training only) are appended after each prompt, tokenized apart so that the
    prompt's tokens stay exactly those used at inference; the model is causal, so the pooled prompt
    positions never see them, while the caller can put an LM loss on them.

    Gemma's BOS position carries a hidden state with a norm far above the others; leaving it in
    the mean makes every pair of texts look alike, so "mean" drops it ("mean_all", for models
    trained with it in, keeps it). `head` (a sentence-transformers Dense stack) maps the pooled
    vector, (N, H) -> (N, H').
    """
    # lazy: torch loads only when this runs
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
    if pooling in ("mean", "mean_all", "lastmean"):
        bos = tokenizer.bos_token_id
        m = torch.zeros(len(prompts), T, dtype=hs.dtype, device=device)  # (N, T): prompt tokens, BOS out
        for i, n in enumerate(plen):
            m[i, :n] = 1
            if pooling != "mean_all" and bos is not None and ids[i][0] == bos and n > 1:
                m[i, 0] = 0
        mean = (hs * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1)  # (N, H)
    if pooling in ("last", "lastmean"):
        last = hs[rows, torch.tensor(plen, device=device) - 1]  # (N, H)
    pooled = mean if last is None else last if mean is None else mean + last
    if head is not None:
        pooled = head(pooled)  # (N, H')
    return Pooled(pooled, hs, input_ids, plen, [len(x) for x in ids])


class PromptCache:
    """The last `size` prompts' vectors, shared by the views of one loaded model that read the same
    prompts: the guard and the key-intent head both embed a message with the classification prompt,
    so for most messages the second view costs no forward pass."""

    def __init__(self, size: int = 64):
        self.size = size
        self.rows: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get_many(self, keys: list, compute) -> np.ndarray:
        """Vectors for `keys` (hashable), computing the missing ones in one `compute(missing_keys)` call."""
        found = {k: self.rows[k] for k in keys if k in self.rows}
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            found.update(zip(missing, compute(missing)))
        for k in dict.fromkeys(keys):  # most recent last; the oldest go
            self.rows[k] = found[k]
            self.rows.move_to_end(k)
        while len(self.rows) > self.size:
            self.rows.popitem(last=False)
        return np.stack([found[k] for k in keys])


class HiddenStateEncoder:
    """Pooled hidden states; optionally with a named PEFT adapter active while encoding."""

    def __init__(self, model, tokenizer, layer: int = -1, name: str = "base", batch_size: int = 16,
                 adapter: str | None = None, fmt: EncoderFormat | None = None, head=None,
                 cache: PromptCache | None = None):
        self.model = model
        self.cache = cache
        """Shared with other views of the same model (see PromptCache); None: every prompt is computed."""
        self.head = head
        self.adapter_dir = None
        """The memory adapter's directory when loaded from one (its recall policy lives there)."""
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
        if not prompts:
            return np.zeros((0, 0), dtype=np.float32)
        if self.cache is None:
            return self._compute(prompts)
        # the key: everything that makes the vector, besides the model the cache belongs to
        keys = [(self.adapter, self.fmt.pooling, self.layer, p) for p in prompts]
        return self.cache.get_many(keys, lambda missing: self._compute([k[-1] for k in missing]))

    def _compute(self, prompts: list[str]) -> np.ndarray:
        # lazy: torch loads only when this runs
        import torch

        out = []
        with torch.inference_mode(), use_adapter(self.model, self.adapter):
            for i in range(0, len(prompts), self.batch_size):
                pooled = pooled_states(self.model, self.tokenizer, prompts[i:i + self.batch_size],
                                       self.fmt.pooling, self.layer, head=self.head).vec
                out.append(pooled.float().cpu().numpy())
        return l2_normalize(np.concatenate(out))
