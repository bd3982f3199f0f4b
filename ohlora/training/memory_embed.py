"""Memory-encoder training forward: texts -> unit vectors with gradients, plus the key loss.

The key loss (optional) appends each line's key after its template and asks the model to write
it: a softmax over only the tokens keys are made of, at the positions from the template's last
token to the key's last. The model is causal, so the pooled prompt positions never see the key;
the loss only shapes what the last prompt position holds: "which kind of memory is this about".
"""

from __future__ import annotations

from ohlora.errors import OhloraError
from ohlora.memory.encoder import EncoderFormat, pooled_states

KEY_END = '"'
"""Closes the key the key loss has the model write (the shipped templates end with an open quote)."""


class TrainEmbedder:
    def __init__(self, model, tokenizer, fmt: EncoderFormat, layer: int = -1, keys: list[str] | None = None,
                 head=None):
        """`keys`: the training keys, to build the key loss's vocabulary (None: no key loss).
        `head`: a sentence-transformers Dense stack applied after pooling (kept frozen)."""
        # lazy: torch loads only when this runs
        import torch

        self.model, self.tok, self.fmt, self.layer, self.pool_head = model, tokenizer, fmt, layer, head
        self.head = None
        if keys:
            inner = model.get_base_model() if hasattr(model, "get_base_model") else model
            self.head = inner.get_output_embeddings()
            if self.head is None or layer != -1:
                raise OhloraError("the key loss needs a causal LM and pooling from its last layer")
            dev = self.head.weight.device
            vocab = sorted({t for k in keys for t in tokenizer(k + KEY_END, add_special_tokens=False).input_ids})
            self.vocab = torch.tensor(vocab, device=dev)  # (V_keys,)
            self.to_vocab = torch.full((self.head.weight.shape[0],), -1, dtype=torch.long, device=dev)
            self.to_vocab[self.vocab] = torch.arange(len(vocab), device=dev)

    def __call__(self, texts: list[str], side: str, keys: list[str] | None = None):
        """(N, H) unit vectors of items (side "item") or messages ("query"), and the key loss for
        `keys` (0.0 when keys is None or the embedder was built without training keys)."""
        # lazy: torch loads only when this runs
        import torch
        import torch.nn.functional as F

        template = self.fmt.item_template if side == "item" else self.fmt.query_template
        prompts = [template.format(t) for t in texts]
        keyed = keys is not None and self.head is not None
        conts = [k + KEY_END for k in keys] if keyed else None
        p = pooled_states(self.model, self.tok, prompts, self.fmt.pooling, self.layer, conts, head=self.pool_head)
        vec = F.normalize(p.vec, dim=-1)
        if not keyed:
            return vec, 0.0
        dev = self.vocab.device
        pos = [(i, t) for i, (n, end) in enumerate(zip(p.prompt_lens, p.lens)) for t in range(n - 1, end - 1)]
        rows = torch.tensor([r for r, _ in pos], device=dev)
        cols = torch.tensor([c for _, c in pos], device=dev)
        logits = p.hidden[rows, cols] @ self.head.weight[self.vocab].T  # (P, V_keys): a key token is next
        return vec, F.cross_entropy(logits.float(), self.to_vocab[p.input_ids[rows, cols + 1]])
