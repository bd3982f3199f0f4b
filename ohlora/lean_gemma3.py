"""LeanGemma3: a minimal Gemma 3 text decoder for one sequence at a time, for fast CPU chat.

The Hugging Face forward is general (batches, masks, hooks, cache classes, LoRA wrappers): per
generated token it runs several thousand small Python-level operations around ~100M multiply-adds.
This module copies the weights once, with the chat LoRA adapter merged in, fuses q/k/v and
gate/up into single matmuls, keeps a preallocated KV cache, and runs the same math in ~40 tensor
operations per layer. `tests/test_fast_generation.py` checks it against the HF forward.

Shapes: T = tokens in this call, S = tokens in the cache, H = hidden size, D = head dim,
nh / nkv = query / key-value heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _merged_weight(linear, adapter: str | None) -> torch.Tensor:
    """The weight a (possibly LoRA-wrapped) Linear applies, with `adapter` merged in: (out, in)."""
    base = getattr(linear, "base_layer", linear)
    w = base.weight.detach().clone()
    if adapter is not None and hasattr(linear, "lora_A") and adapter in linear.lora_A:
        w += linear.get_delta_weight(adapter).detach().to(w.dtype)
    return w


class LeanGemma3:
    def __init__(self, decoder, adapter: str | None = None):
        cfg = decoder.config
        self.cfg = cfg
        self.nh, self.nkv, self.D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.scaling = cfg.query_pre_attn_scalar ** -0.5
        self.window = cfg.sliding_window
        self.embed = decoder.embed_tokens.weight.detach()  # (V, H), shared with the model
        self.embed_scale = torch.tensor(cfg.hidden_size ** 0.5, dtype=self.embed.dtype)
        self.final_w = 1.0 + decoder.norm.weight.detach().float()
        self.layers = []
        for i, layer in enumerate(decoder.layers[: cfg.num_hidden_layers]):
            a, m = layer.self_attn, layer.mlp
            self.layers.append({
                "qkv": torch.cat([_merged_weight(a.q_proj, adapter), _merged_weight(a.k_proj, adapter),
                                  _merged_weight(a.v_proj, adapter)]).contiguous(),  # (nh*D + 2*nkv*D, H)
                "o": _merged_weight(a.o_proj, adapter).contiguous(),  # (H, nh*D)
                "gu": torch.cat([_merged_weight(m.gate_proj, adapter), _merged_weight(m.up_proj, adapter)]).contiguous(),
                "down": _merged_weight(m.down_proj, adapter).contiguous(),  # (H, I)
                "in": 1.0 + layer.input_layernorm.weight.detach().float(),
                "post_attn": 1.0 + layer.post_attention_layernorm.weight.detach().float(),
                "pre_ff": 1.0 + layer.pre_feedforward_layernorm.weight.detach().float(),
                "post_ff": 1.0 + layer.post_feedforward_layernorm.weight.detach().float(),
                "q_norm": 1.0 + a.q_norm.weight.detach().float(),
                "k_norm": 1.0 + a.k_norm.weight.detach().float(),
                "type": cfg.layer_types[i],
            })
        self.inter = cfg.intermediate_size
        self.inv_freq = {}
        for kind in set(cfg.layer_types):
            params = cfg.rope_parameters[kind]
            if params.get("rope_type", "default") != "default":
                raise ValueError(f"LeanGemma3 supports default RoPE only, not {params['rope_type']}")
            self.inv_freq[kind] = 1.0 / (params["rope_theta"] ** (torch.arange(0, self.D, 2, dtype=torch.float) / self.D))

    def _rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def new_cache(self, max_len: int) -> dict:
        L = len(self.layers)
        shape = (L, self.nkv, max_len, self.D)
        cos_sin = {}
        for kind, inv in self.inv_freq.items():
            freqs = torch.arange(max_len, dtype=torch.float)[:, None] * inv  # (S, D/2)
            emb = torch.cat([freqs, freqs], -1)  # (S, D)
            cos_sin[kind] = (emb.cos(), emb.sin())
        return {"k": torch.zeros(shape), "v": torch.zeros(shape), "len": 0, "rope": cos_sin}

    @staticmethod
    def _rope(x, cos, sin):  # x: (heads, T, D)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def forward(self, ids: torch.Tensor, cache: dict) -> torch.Tensor:
        """Run tokens `ids` (T,) after the cached ones; returns the final-normed hidden state of the
        last token (H,)."""
        T, p0 = ids.shape[0], cache["len"]
        S = p0 + T
        x = self.embed[ids] * self.embed_scale  # (T, H)
        nq, nk = self.nh * self.D, self.nkv * self.D
        for li, L in enumerate(self.layers):
            h = self._rms(x, L["in"])
            qkv = h @ L["qkv"].T  # (T, nq + 2 nk)
            q = qkv[:, :nq].view(T, self.nh, self.D).transpose(0, 1)  # (nh, T, D)
            k = qkv[:, nq:nq + nk].view(T, self.nkv, self.D).transpose(0, 1)  # (nkv, T, D)
            v = qkv[:, nq + nk:].view(T, self.nkv, self.D).transpose(0, 1)
            q, k = self._rms(q, L["q_norm"]), self._rms(k, L["k_norm"])
            cos, sin = (t[p0:S] for t in cache["rope"][L["type"]])  # (T, D)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            cache["k"][li, :, p0:S] = k
            cache["v"][li, :, p0:S] = v
            keys, values = cache["k"][li, :, :S], cache["v"][li, :, :S]  # (nkv, S, D)
            mask = None
            sliding = L["type"] == "sliding_attention" and self.window and S > self.window
            if T > 1 or sliding:
                i = torch.arange(p0, S)[:, None]  # query positions
                j = torch.arange(S)[None, :]  # key positions
                allowed = j <= i
                if sliding:
                    allowed &= j > i - self.window
                mask = allowed  # (T, S)
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scaling,
                                                  enable_gqa=self.nh != self.nkv)  # (nh, T, D)
            attn = attn.transpose(0, 1).reshape(T, nq) @ L["o"].T  # (T, H)
            x = x + self._rms(attn, L["post_attn"])
            h = self._rms(x, L["pre_ff"])
            gu = h @ L["gu"].T  # (T, 2 I)
            m = F.gelu(gu[:, :self.inter], approximate="tanh") * gu[:, self.inter:]
            x = x + self._rms(m @ L["down"].T, L["post_ff"])
        cache["len"] = S
        return self._rms(x[-1], self.final_w)
